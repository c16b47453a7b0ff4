#!/usr/bin/env python3
"""Tests for the imper.ai simulator (tests/sim/imperai_sim.py).

Run from anywhere: python3 tests/sim/test_imperai_sim.py
Environment:
  IMPERAI_PARSE_CHECK     path of tests/unit/imperai_parse_check: the
                          simulator's answers are also run through the C
                          client's parsers (skipped, with a message, if unset)
  IMPERAI_WRITE_FIXTURES  a directory (tests/data/imperai) to write the
                          fixture bodies the C unit test parses
"""

import errno
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SIM = os.path.join(HERE, "imperai_sim.py")
KEY = "sim-api-key"
API = "/v1/verification-requests"
FIXED_NOW = 1795514400  # 2026-11-24T10:00:00Z


class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")


class Sim:
    """One simulator process on its own port and data directory."""

    def __init__(self, *args, datadir=None):
        self.own_dir = datadir is None
        self.dir = datadir or tempfile.mkdtemp(prefix="imperai-sim-test-")
        self.args = list(args)
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, SIM, "--port", "0", "--data", self.dir] + self.args,
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.first_line = self.proc.stdout.readline().decode()
        m = re.fullmatch(r"imperai_sim listening on http://127\.0\.0\.1:(\d+)\n", self.first_line)
        if not m:
            self.proc.kill()
            raise RuntimeError("simulator did not start: %r" % self.first_line)
        self.port = int(m.group(1))
        self.base = "http://127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=10)
        self.proc.stdout.close()
        return rc

    def close(self):
        if self.proc.poll() is None:
            self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def call(self, method, path, body=None, key=KEY, headers=None, raw=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {}
        if key is not None:
            h["Authorization"] = "Bearer " + key
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return Resp(r.status, r.headers, r.read())
        finally:
            conn.close()

    def ok(self, method, path, body=None, want=200, **kw):
        r = self.call(method, path, body, **kw)
        if r.status != want:
            raise AssertionError("%s %s: HTTP %d, want %d: %s" % (method, path, r.status, want,
                                                                  r.text[:500]))
        return r.json()

    def create(self, n=1, key=None, **over):
        body = create_body(n, **over)
        return self.ok("POST", API, body, want=201,
                       headers={"Idempotency-Key": key} if key else None)

    def act(self, vid, do, want=200, **kw):
        kw.update(id=vid, do=do)
        return self.ok("POST", "/sim/act", kw, want=want, key=None)

    def feed(self, cursor=None, limit=100):
        q = {"limit": str(limit)}
        if cursor is not None:
            q["cursor"] = cursor
        return self.ok("GET", API + "/changes?" + urllib.parse.urlencode(q))

    def page(self, url, form=None):
        """A page as a browser would fetch it (urllib): (status, html)."""
        if url.startswith("/"):
            url = self.base + url
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


def create_body(n=1, **over):
    body = {
        "ticket": {"instance": "dev12345", "table": "incident", "sys_id": "%032x" % n,
                   "number": "INC%07d" % (10000 + n),
                   "url": "https://dev12345.service-now.com/incident.do?sys_id=%032x" % n},
        "subject": "Password reset for ticket %d" % n,
        "description": "I forgot my password.",
        "category": "password_reset",
        "requested_action": "password_reset",
        "requester": {"name": "Jane Doe", "email": "jane%d@example.com" % n,
                      "user_name": "jane.doe%d" % n},
        "assigned_agent": "Beth Anglin",
    }
    body.update(over)
    return body


def path_of(url):
    return urllib.parse.urlsplit(url).path


class SimCase(unittest.TestCase):
    sim_args = ()

    @classmethod
    def setUpClass(cls):
        cls.sim = Sim(*cls.sim_args)

    @classmethod
    def tearDownClass(cls):
        cls.sim.close()


VERIFICATION_FIELDS = {
    "id": str, "ticket": dict, "status": str, "channel": (str, type(None)),
    "recipient_masked": (str, type(None)), "initiated_by": (str, type(None)),
    "risk_score": (int, type(None)), "recommendation": (str, type(None)),
    "analysis_summary": (str, type(None)), "additional_info": (str, type(None)),
    "send_link_url": str, "details_url": str, "expires_at": str, "created_at": str,
    "completed_at": (str, type(None)), "updated_at": str, "sent_at": (str, type(None)),
    "action": dict,
    "category": (str, type(None)), "requested_action": str, "subject": str,
}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class ApiTest(SimCase):
    sim_args = ("--seed", "1")

    def assert_verification(self, v):
        self.assertEqual(set(v), set(VERIFICATION_FIELDS))
        for k, t in VERIFICATION_FIELDS.items():
            self.assertIsInstance(v[k], t, k)
        self.assertRegex(v["id"], r"^vr_[0-9a-f]+$")
        self.assertEqual(set(v["ticket"]), {"instance", "table", "sys_id", "number", "url"})
        self.assertEqual(set(v["action"]), {"type", "status", "completed_at", "automated"})
        self.assertIsInstance(v["action"]["automated"], bool)
        for k in ("expires_at", "created_at", "updated_at"):
            self.assertRegex(v[k], RFC3339)
        if v["risk_score"] is not None:
            self.assertTrue(0 <= v["risk_score"] <= 10)

    def test_create_returns_the_full_object_with_201(self):
        r = self.sim.call("POST", API, create_body(1), headers={"Idempotency-Key": "k-create"})
        self.assertEqual(r.status, 201)
        v = r.json()
        self.assert_verification(v)
        self.assertEqual(r.headers["Location"], API + "/" + v["id"])
        self.assertEqual(v["status"], "pending")
        self.assertEqual(v["ticket"], create_body(1)["ticket"])
        self.assertEqual(v["action"], {"type": "password_reset", "status": "pending",
                                       "completed_at": None, "automated": False})
        self.assertTrue(v["send_link_url"].startswith(self.sim.base + "/send/"))
        self.assertEqual(v["details_url"], self.sim.base + "/verifications/" + v["id"])
        self.assertIsNone(v["risk_score"])
        self.assertNotIn("requester", v)  # identity data is not echoed

    def test_create_with_no_action_has_action_none(self):
        v = self.sim.create(2, requested_action="none")
        self.assertEqual(v["action"]["status"], "none")
        self.assertEqual(v["action"]["type"], "none")

    def test_create_validation_names_the_field(self):
        def bad(body, message, code="invalid_request", raw=None):
            r = self.sim.call("POST", API, body, raw=raw)
            self.assertEqual(r.status, 400, r.text)
            self.assertEqual(r.json(), {"error": {"code": code, "message": message}})

        b = create_body(3)
        del b["ticket"]["sys_id"]
        bad(b, "ticket.sys_id: required")
        bad(create_body(3, subject=7), "subject: expected string")
        bad(create_body(3, requested_action="Reset Password!"),
            "requested_action: expected a lower-case word such as password_reset or none")
        bad(create_body(3, requester="jane"), "requester: required object")
        bad(create_body(3, description="a\x00b"), "description: contains a NUL character")
        bad(None, "body: expected a JSON object", raw=b"[1,2]")
        r = self.sim.call("POST", API, raw=b"{\"ticket\":")
        self.assertEqual(r.json()["error"]["code"], "invalid_json")
        r = self.sim.call("POST", API, raw=b"{\"subject\":\"\xff\"}")
        self.assertEqual(r.json()["error"], {"code": "invalid_json",
                                             "message": "body: not valid UTF-8"})

    def test_unknown_fields_in_create_are_ignored(self):
        v = self.sim.create(4, future={"x": [1, 2]}, priority=1)
        self.assertEqual(v["status"], "pending")

    def test_every_api_call_needs_the_bearer_key(self):
        v = self.sim.create(5)
        calls = (("POST", API), ("GET", API + "/changes"), ("GET", API + "/" + v["id"]),
                 ("POST", API + "/" + v["id"] + "/cancel"))
        for method, path in calls:
            for key in (None, "wrong-key", ""):
                r = self.sim.call(method, path, {} if method == "POST" else None, key=key)
                self.assertEqual(r.status, 401, (method, path, key))
                self.assertEqual(r.json()["error"]["code"], "unauthorized")
                self.assertEqual(r.headers["WWW-Authenticate"], 'Bearer realm="imper.ai"')
            r = self.sim.call(method, path, None, headers={"Authorization": "Basic " + KEY})
            self.assertEqual(r.status, 401)
        self.assertEqual(self.sim.ok("GET", API + "/" + v["id"])["status"], "pending")

    def test_idempotency_same_key_same_body_same_request(self):
        body = create_body(6)
        first = self.sim.call("POST", API, body, headers={"Idempotency-Key": "dev/inc/6/1"})
        again = self.sim.call("POST", API, raw=json.dumps(body, sort_keys=True, indent=2).encode(),
                              headers={"Idempotency-Key": "dev/inc/6/1"})
        self.assertEqual((first.status, again.status), (201, 200))
        self.assertEqual(first.json()["id"], again.json()["id"])
        # the replay answers the request as it is now
        self.sim.act(first.json()["id"], "send", recipient="jane@example.com", agent="Beth")
        third = self.sim.call("POST", API, body, headers={"Idempotency-Key": "dev/inc/6/1"})
        self.assertEqual((third.status, third.json()["status"]), (200, "link_sent"))

    def test_idempotency_same_key_different_body_conflicts(self):
        self.sim.create(7, key="dev/inc/7/1")
        r = self.sim.call("POST", API, create_body(7, subject="other"),
                          headers={"Idempotency-Key": "dev/inc/7/1"})
        self.assertEqual(r.status, 409)
        self.assertEqual(r.json()["error"]["code"], "idempotency_conflict")

    def test_without_key_every_create_is_new_and_bad_keys_are_refused(self):
        a, b = self.sim.create(8), self.sim.create(8)
        self.assertNotEqual(a["id"], b["id"])
        for bad in ("has space", "x" * 256):
            r = self.sim.call("POST", API, create_body(8), headers={"Idempotency-Key": bad})
            self.assertEqual((r.status, r.json()["error"]["code"]),
                             (400, "invalid_idempotency_key"))

    def test_get_returns_the_object_and_404_for_unknown(self):
        v = self.sim.create(9)
        self.assertEqual(self.sim.ok("GET", API + "/" + v["id"]), v)
        r = self.sim.call("GET", API + "/vr_doesnotexist")
        self.assertEqual((r.status, r.json()["error"]["code"]), (404, "not_found"))
        r = self.sim.call("GET", API + "/..%2F" + v["id"])  # a segment stays a segment
        self.assertEqual((r.status, r.json()["error"]["message"]),
                         (404, "no verification request ../" + v["id"]))
        self.assertEqual(self.sim.ok("GET", API + "/" + v["id"].replace("_", "%5F")), v)

    def test_cancel_is_idempotent_and_refuses_final_requests(self):
        v = self.sim.create(10)
        c1 = self.sim.ok("POST", API + "/" + v["id"] + "/cancel", {"reason": "requester changed"})
        self.assertEqual(c1["status"], "canceled")
        self.assertEqual(c1["action"]["status"], "none")
        self.assertRegex(c1["completed_at"], RFC3339)
        self.assertIn("requester changed", c1["additional_info"])
        c2 = self.sim.ok("POST", API + "/" + v["id"] + "/cancel")
        self.assertEqual(c2, c1)
        w = self.sim.create(11)
        self.sim.act(w["id"], "send", recipient="jane@example.com", agent="Beth")
        done = self.sim.act(w["id"], "complete", outcome="passed", risk_score=2)
        r = self.sim.call("POST", API + "/" + w["id"] + "/cancel", {})
        self.assertEqual(r.status, 409)
        err = r.json()["error"]
        self.assertEqual(err["code"], "already_final")
        self.assertEqual(err["verification"], done)
        r = self.sim.call("POST", API + "/vr_nope/cancel", {})
        self.assertEqual(r.status, 404)

    def test_transitions_through_the_control_api(self):
        v = self.sim.create(12)
        vid = v["id"]
        sent = self.sim.act(vid, "send", channel="email", recipient="jane@example.com",
                            agent="Beth Anglin")
        self.assertEqual((sent["status"], sent["channel"], sent["recipient_masked"],
                          sent["initiated_by"]), ("link_sent", "email", "j***e@e***.com",
                                                  "Beth Anglin"))
        self.assertEqual(self.sim.act(vid, "start")["status"], "in_progress")
        done = self.sim.act(vid, "complete", outcome="passed", risk_score=2)
        self.assertEqual((done["status"], done["risk_score"], done["recommendation"]),
                         ("passed", 2, "User verified successfully - Proceed with action"))
        self.assertIsNotNone(done["analysis_summary"])
        self.assertEqual(done["action"]["status"], "pending")
        act = self.sim.act(vid, "action", status="completed")
        self.assertEqual(act["action"]["status"], "completed")
        self.assertTrue(act["action"]["automated"])
        self.assertRegex(act["action"]["completed_at"], RFC3339)
        # what cannot happen
        for do, kw in (("start", {}), ("send", {"recipient": "a@b.cd", "agent": "x"}),
                       ("complete", {"outcome": "failed"})):
            r = self.sim.call("POST", "/sim/act", dict(kw, id=vid, do=do), key=None)
            self.assertEqual((r.status, r.json()["error"]["code"]), (409, "invalid_transition"))
        r = self.sim.call("POST", "/sim/act", {"id": vid, "do": "fly"}, key=None)
        self.assertEqual(r.status, 400)

    def test_failed_outcome_is_high_risk_and_ends_the_action(self):
        v = self.sim.create(13)
        self.sim.act(v["id"], "send", recipient="+1 (555) 123-4567", agent="Beth")
        f = self.sim.act(v["id"], "complete", outcome="failed")
        self.assertEqual((f["status"], f["risk_score"], f["channel"]), ("failed", 9, "sms"))
        self.assertEqual(f["recipient_masked"], "+1********67")
        self.assertEqual(f["recommendation"], "High risk detected - Reject this request")
        self.assertEqual(f["action"]["status"], "none")
        r = self.sim.call("POST", "/sim/act", {"id": v["id"], "do": "action",
                                               "status": "completed"}, key=None)
        self.assertEqual(r.status, 409)

    def test_retarget_changes_the_ticket_reference(self):
        v = self.sim.create(14)
        t = self.sim.act(v["id"], "retarget", ticket={"sys_id": "f" * 32, "number": "INC9999999"})
        self.assertEqual(t["ticket"]["number"], "INC9999999")
        self.assertEqual(t["ticket"]["instance"], "dev12345")
        self.assertEqual(self.sim.feed(limit=500)["data"][-1]["ticket"]["number"], "INC9999999")

    def test_feed_pages_with_an_opaque_cursor(self):
        start = self.sim.feed(limit=500)
        while start["has_more"]:
            start = self.sim.feed(start["next_cursor"], 500)
        cur = start["next_cursor"]
        ids = [self.sim.create(20 + i)["id"] for i in range(5)]
        p1 = self.sim.feed(cur, 2)
        p2 = self.sim.feed(p1["next_cursor"], 2)
        p3 = self.sim.feed(p2["next_cursor"], 2)
        self.assertEqual([p["has_more"] for p in (p1, p2, p3)], [True, True, False])
        self.assertEqual([v["id"] for p in (p1, p2, p3) for v in p["data"]], ids)
        empty = self.sim.feed(p3["next_cursor"], 2)
        self.assertEqual((empty["data"], empty["has_more"]), ([], False))
        self.assertEqual(empty["next_cursor"], p3["next_cursor"])
        # a change moves the request to the end of the feed, once
        self.sim.act(ids[0], "send", recipient="jane@example.com", agent="Beth")
        again = self.sim.feed(p3["next_cursor"], 10)
        self.assertEqual([v["id"] for v in again["data"]], [ids[0]])
        self.assertEqual(again["data"][0]["status"], "link_sent")
        # no cursor, or an empty one, starts from the beginning
        self.assertEqual(self.sim.feed(None, 1)["data"], self.sim.feed("", 1)["data"])

    def test_feed_refuses_bad_cursor_and_limit(self):
        for q, code in (("cursor=not-a-cursor!", "invalid_cursor"), ("cursor=djI6MQ", "invalid_cursor"),
                        ("limit=0", "invalid_request"), ("limit=501", "invalid_request"),
                        ("limit=ten", "invalid_request")):
            r = self.sim.call("GET", API + "/changes?" + q)
            self.assertEqual((r.status, r.json()["error"]["code"]), (400, code), q)

    def test_unknown_endpoints_and_methods(self):
        r = self.sim.call("GET", "/v1/nothing")
        self.assertEqual((r.status, r.json()["error"]["code"]), (404, "not_found"))
        r = self.sim.call("DELETE", API + "/vr_1")
        self.assertEqual((r.status, r.json()["error"]["code"]), (405, "method_not_allowed"))
        r = self.sim.call("GET", API)
        self.assertEqual(r.status, 405)

    def test_keep_alive_serves_several_requests_on_one_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=10)
        try:
            for _ in range(3):
                conn.request("GET", "/sim/health")
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.version, 11)
                r.read()
            self.assertIsNotNone(conn.sock)  # never closed by the server
        finally:
            conn.close()


class FeedConcurrencyTest(SimCase):
    """The feed neither skips nor repeats while requests change under it."""

    def test_pager_sees_every_change_and_final_state_without_repeats(self):
        n, workers = 24, 4
        ids = [self.sim.create(100 + i, requested_action="password_reset")["id"]
               for i in range(n)]
        done = threading.Event()
        errors = []

        def change(mine):
            try:
                for i, vid in enumerate(mine):
                    self.sim.act(vid, "send", recipient="u%d@example.com" % i, agent="Beth")
                    self.sim.act(vid, "start")
                    outcome = ("passed", "failed", "not_enough_questions")[i % 3]
                    self.sim.act(vid, "complete", outcome=outcome)
                    if outcome == "passed":
                        self.sim.act(vid, "action", status="completed")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=change, args=(ids[w::workers],))
                   for w in range(workers)]
        pages, cursor = [], None

        def page_once():
            p = self.sim.feed(cursor, 5)
            pages.append(p["data"])
            return p

        for t in threads:
            t.start()
        watcher = threading.Thread(target=lambda: ([t.join() for t in threads], done.set()))
        watcher.start()
        while not done.is_set():
            cursor = page_once()["next_cursor"]
        while True:  # drain what changed after the last page
            p = page_once()
            cursor = p["next_cursor"]
            if not p["has_more"]:
                break
        watcher.join()
        self.assertEqual(errors, [])
        last = {}
        for data in pages:
            seen = [v["id"] for v in data]
            self.assertEqual(len(seen), len(set(seen)), "an id twice in one page")
            for v in data:
                if v["id"] in last:
                    self.assertNotEqual(v, last[v["id"]], "repeated without a change")
                    self.assertGreaterEqual(v["updated_at"], last[v["id"]]["updated_at"])
                last[v["id"]] = v
        for vid in ids:
            self.assertIn(vid, last)
            self.assertEqual(last[vid], self.sim.ok("GET", API + "/" + vid), "final state")
            self.assertIn(last[vid]["status"], ("passed", "failed", "not_enough_questions"))


class ExpiryTest(SimCase):
    sim_args = ("--link-ttl", "100")

    def test_requests_time_out_on_the_sim_clock(self):
        fresh = self.sim.create(1)
        sent = self.sim.create(2)
        self.sim.act(sent["id"], "send", recipient="jane@example.com", agent="Beth")
        verify = self.sim.ok("GET", "/sim/outbox", key=None)["messages"][0]["link"]
        self.sim.ok("POST", "/sim/clock", {"advance": 50}, key=None)
        self.assertEqual(self.sim.ok("GET", API + "/" + fresh["id"])["status"], "pending")
        now = self.sim.ok("POST", "/sim/clock", {"advance": 60}, key=None)["now"]
        for vid in (fresh["id"], sent["id"]):
            v = self.sim.ok("GET", API + "/" + vid)
            self.assertEqual(v["status"], "timed_out")
            self.assertEqual(v["recommendation"],
                             "Verification timed out - Send a new verification link")
            self.assertEqual(v["action"]["status"], "none")
            self.assertIsNone(v["risk_score"])
            self.assertLessEqual(abs(time.mktime(time.strptime(v["completed_at"],
                                                               "%Y-%m-%dT%H:%M:%SZ"))
                                     - time.timezone - now), 5)
        status, body = self.sim.page(path_of(fresh["send_link_url"]))
        self.assertEqual(status, 410)
        self.assertIn("expired", body)
        status, body = self.sim.page(verify)
        self.assertEqual(status, 410)
        feed = self.sim.feed()
        self.assertEqual({v["status"] for v in feed["data"]}, {"timed_out"})

    def test_clock_set_and_expire_action(self):
        v = self.sim.create(3)
        e = self.sim.act(v["id"], "expire")
        self.assertEqual(e["status"], "timed_out")
        got = self.sim.ok("POST", "/sim/clock", {"set": FIXED_NOW, "freeze": True}, key=None)
        self.assertEqual((got["now"], got["now_text"], got["frozen"]),
                         (FIXED_NOW, "2026-11-24T10:00:00Z", True))
        self.assertEqual(self.sim.ok("GET", "/sim/clock", key=None)["now"], FIXED_NOW)
        got = self.sim.ok("POST", "/sim/clock", {"advance": 5}, key=None)
        self.assertEqual(got["now"], FIXED_NOW + 5)
        got = self.sim.ok("POST", "/sim/clock", {"freeze": False}, key=None)
        self.assertFalse(got["frozen"])
        self.assertGreaterEqual(got["now"], FIXED_NOW + 5)
        for bad in ({"advance": "soon"}, {"forward": 5}, {"freeze": 1}):
            r = self.sim.call("POST", "/sim/clock", bad, key=None)
            self.assertEqual(r.status, 400, bad)
        got = self.sim.ok("POST", "/sim/clock", {"reset": True}, key=None)
        self.assertLess(abs(got["now"] - time.time()), 5)


class ExpiryOrderTest(SimCase):
    sim_args = ("--link-ttl", "100")

    def test_each_request_times_out_at_its_own_time(self):
        """Expiry is checked lazily, against the earliest expires_at; a
        request created later must still time out, and only then."""
        early = self.sim.create(11)
        self.sim.ok("POST", "/sim/clock", {"advance": 60}, key=None)
        late = self.sim.create(12)
        self.sim.ok("POST", "/sim/clock", {"advance": 50}, key=None)
        self.assertEqual(self.sim.ok("GET", API + "/" + early["id"])["status"], "timed_out")
        self.assertEqual(self.sim.ok("GET", API + "/" + late["id"])["status"], "pending")
        self.sim.ok("POST", "/sim/clock", {"advance": 45}, key=None)
        self.assertEqual(self.sim.ok("GET", API + "/" + late["id"])["status"], "pending")
        self.sim.ok("POST", "/sim/clock", {"advance": 10}, key=None)
        self.assertEqual(self.sim.ok("GET", API + "/" + late["id"])["status"], "timed_out")


class PagesTest(SimCase):
    sim_args = ("--seed", "3")

    def send_via_page(self, v, recipient="jane.private@example.org", agent="Beth Anglin"):
        status, body = self.sim.page(path_of(v["send_link_url"]),
                                     {"recipient": recipient, "agent": agent})
        self.assertEqual(status, 200, body)
        self.assertIn('id="sent"', body)

    def outbox_link(self, number):
        status, body = self.sim.page("/outbox")
        self.assertEqual(status, 200)
        m = re.search(r'<td class="ticket">%s</td><td><a class="verify-link" href="([^"]+)"'
                      % number, body)
        self.assertIsNotNone(m, body)
        return m.group(1)

    def test_send_page_validates_and_sends(self):
        v = self.sim.create(1, subject="Reset <b>now</b> & \"quick\"")
        path = path_of(v["send_link_url"])
        status, body = self.sim.page(path)
        self.assertEqual(status, 200)
        for needle in ('id="send"', 'id="recipient"', 'id="agent"', "INC0010001",
                       "Reset &lt;b&gt;now&lt;/b&gt; &amp; &quot;quick&quot;"):
            self.assertIn(needle, body)
        for form, message in (
                ({"recipient": "jane@", "agent": "Beth"}, "not an email address"),
                ({"recipient": "12345", "agent": "Beth"}, "international format"),
                ({"recipient": "jane@example.com", "agent": " "}, "Enter your name")):
            status, body = self.sim.page(path, form)
            self.assertEqual(status, 400)
            self.assertRegex(body, r'<p id="error" class="error">[^<]*%s' % message)
        self.assertEqual(self.sim.ok("GET", API + "/" + v["id"])["status"], "pending")
        status, body = self.sim.page(path, {"recipient": "jane.private@example.org",
                                            "agent": "Beth Anglin"})
        self.assertEqual(status, 200, body)
        self.assertIn('<p id="sent" class="ok">A verification link was sent by email to '
                      'j***e@e***.org.</p>', body)
        # The agent finds the way back to the ticket.
        self.assertIn('<a id="ticket-link" href="https://dev12345.service-now.com/incident.do?'
                      'sys_id=%032x">' % 1, body)
        got = self.sim.ok("GET", API + "/" + v["id"])
        self.assertEqual((got["status"], got["recipient_masked"], got["initiated_by"]),
                         ("link_sent", "j***e@e***.org", "Beth Anglin"))
        status, body = self.sim.page(path)  # the send link is single-use too
        self.assertEqual(status, 410)
        self.assertIn("already been used", body)

    def test_send_again_while_sent_replaces_both_links(self):
        v = self.sim.create(5)
        self.send_via_page(v, recipient="jane.typo@example.org")
        first = self.sim.ok("GET", API + "/" + v["id"])
        link1 = self.outbox_link("INC0010005")
        # the field's link is the request's newest send link
        self.assertNotEqual(first["send_link_url"], v["send_link_url"])
        status, body = self.sim.page(path_of(first["send_link_url"]))
        self.assertEqual(status, 200)
        self.assertIn('id="resend"', body)
        self.sim.ok("POST", "/sim/clock", {"advance": 30})
        self.send_via_page(first, recipient="+1 555 123 4567", agent="Ivy Agent")
        got = self.sim.ok("GET", API + "/" + v["id"])
        self.assertEqual((got["status"], got["channel"], got["recipient_masked"],
                          got["initiated_by"]), ("link_sent", "sms", "+1********67", "Ivy Agent"))
        self.assertGreater(got["sent_at"], first["sent_at"])
        link2 = self.outbox_link("INC0010005")
        self.assertNotEqual(link1, link2)
        # links stay single-use: every earlier one is gone for good
        status, body = self.sim.page(link1)
        self.assertEqual(status, 410)
        self.assertIn("replaced by a newer one", body)
        for used in (v["send_link_url"], first["send_link_url"]):
            status, body = self.sim.page(path_of(used))
            self.assertEqual(status, 410)
            self.assertIn("already been used", body)
        status, body = self.sim.page(link2, {"q1": "Service desk", "q2": "Anna", "q3": "Prague"})
        self.assertEqual(status, 200)
        self.assertEqual(self.sim.ok("GET", API + "/" + v["id"])["status"], "passed")
        # after the outcome nothing can be sent
        status, body = self.sim.page(path_of(got["send_link_url"]))
        self.assertEqual(status, 410)

    def test_outbox_verify_and_reset_flow(self):
        v = self.sim.create(2)
        self.send_via_page(v)
        link = self.outbox_link("INC0010002")
        status, body = self.sim.page(link)
        self.assertEqual(status, 200)
        for needle in ('id="verify"', 'id="q1"', 'id="q2"', 'id="q3"'):
            self.assertIn(needle, body)
        self.assertEqual(self.sim.ok("GET", API + "/" + v["id"])["status"], "in_progress")
        status, body = self.sim.page(link, {"q1": "Service desk", "q2": "Anna", "q3": "Prague"})
        self.assertEqual(status, 200)
        self.assertIn('id="result" class="ok">Verification passed', body)
        reset = re.search(r'<a id="reset-link" href="([^"]+)"', body).group(1)
        got = self.sim.ok("GET", API + "/" + v["id"])
        self.assertEqual(got["status"], "passed")
        self.assertIn(got["risk_score"], (1, 2, 3))
        self.assertEqual(got["recommendation"], "User verified successfully - Proceed with action")
        # the verification link was single-use
        status, body = self.sim.page(link)
        self.assertEqual(status, 410)
        self.assertIn("already been used", body)
        status, body = self.sim.page(reset)
        self.assertIn('id="reset"', body)
        for pw, again, message in (("short1", "short1", "at least 12"),
                                   ("longpassword", "longpassword", "letter and one digit"),
                                   ("longpassword1", "longpassword2", "do not match")):
            status, body = self.sim.page(reset, {"password": pw, "confirm": again})
            self.assertEqual(status, 400)
            self.assertIn(message, body)
        status, body = self.sim.page(reset, {"password": "correct horse 9", "confirm":
                                             "correct horse 9"})
        self.assertEqual(status, 200)
        self.assertIn('id="done"', body)
        got = self.sim.ok("GET", API + "/" + v["id"])
        self.assertEqual((got["action"]["status"], got["action"]["automated"]),
                         ("completed", True))
        status, _ = self.sim.page(reset)
        self.assertEqual(status, 410)

    def test_answering_fail_fails_with_high_risk(self):
        v = self.sim.create(3)
        self.send_via_page(v)
        link = self.outbox_link("INC0010003")
        status, body = self.sim.page(link, {"q1": "fail", "q2": "x", "q3": "y"})
        self.assertIn("Verification failed", body)
        self.assertNotIn("reset-link", body)
        got = self.sim.ok("GET", API + "/" + v["id"])
        self.assertEqual((got["status"], got["risk_score"]), ("failed", 9))

    def test_outcome_knob_and_too_few_answers(self):
        v = self.sim.create(4)
        self.send_via_page(v)
        link = self.outbox_link("INC0010004")
        status, body = self.sim.page(link + "?outcome=passed&risk=5")
        self.assertIn('name="outcome" value="passed"', body)
        self.sim.page(link, {"outcome": "passed", "risk": "5", "q1": "", "q2": "", "q3": ""})
        got = self.sim.ok("GET", API + "/" + v["id"])
        self.assertEqual((got["status"], got["risk_score"]), ("passed", 5))
        self.assertTrue(got["recommendation"].startswith("Medium risk"))
        w = self.sim.create(5, requested_action="none")
        self.send_via_page(w, recipient="+420 601 234 567")
        link = self.outbox_link("INC0010005")
        self.sim.page(link)
        status, body = self.sim.page(link, {"q1": "only one", "q2": "", "q3": ""})
        got = self.sim.ok("GET", API + "/" + w["id"])
        self.assertEqual((got["status"], got["risk_score"], got["channel"]),
                         ("not_enough_questions", None, "sms"))

    def test_console_pages_show_the_columns_but_not_the_private_address(self):
        v = self.sim.create(6, description="Locked out <again>")
        self.send_via_page(v, recipient="secret.box@private.example")
        self.sim.act(v["id"], "complete", outcome="failed", risk_score=8)
        status, body = self.sim.page("/verifications")
        self.assertEqual(status, 200)
        row = re.search(r'<tr id="row-%s">(.*?)</tr>' % v["id"], body).group(1)
        for needle in ("INC0010006", "Jane Doe", "jane6@example.com", '"risk">High<',
                       '"status">Failed<', '"category">password_reset<',
                       '"initiated-by">Beth Anglin<'):
            self.assertIn(needle, row)
        status, body = self.sim.page(path_of(v["details_url"]))
        self.assertEqual(status, 200)
        for i, want in (("ticket-number", "INC0010006"), ("status", "Failed"),
                        ("risk-level", "High"), ("initiated-by", "Beth Anglin"),
                        ("description", "Locked out &lt;again&gt;"),
                        ("requested-action", "password_reset"),
                        ("recommendation", "High risk detected - Reject this request")):
            self.assertIn('id="%s">%s</dd>' % (i, want), body)
        self.assertIn('id="analysis-summary">', body)
        for page_body in (body, self.sim.page("/verifications")[1]):
            self.assertNotIn("secret.box", page_body)

    def test_sent_page_links_back_only_to_a_web_ticket_url(self):
        for n, url in ((7, "javascript:alert(1)"), (8, None)):
            v = self.sim.create(n, ticket=dict(create_body(n)["ticket"], url=url))
            status, body = self.sim.page(path_of(v["send_link_url"]),
                                         {"recipient": "jane@example.org", "agent": "Beth"})
            self.assertEqual(status, 200, body)
            self.assertIn('id="sent"', body)
            self.assertNotIn("ticket-link", body)
            self.assertNotIn("javascript:", body)

    def test_unknown_tokens_are_404(self):
        for p in ("/send/nope", "/verify/nope", "/reset/nope", "/verifications/vr_nope"):
            self.assertEqual(self.sim.page(p)[0], 404, p)


class DailyCapTest(SimCase):
    sim_args = ("--daily-cap", "2", "--link-ttl", "259200")

    def test_third_send_for_one_user_in_a_day_is_refused(self):
        email = "capped@example.com"
        vs = [self.sim.create(i, requester={"name": "C", "email": email, "user_name": "c"})
              for i in (1, 2, 3, 4)]
        for v in vs[:2]:
            self.sim.act(v["id"], "send", recipient="other@example.net", agent="Beth")
        status, body = self.sim.page(path_of(vs[2]["send_link_url"]),
                                     {"recipient": "other@example.net", "agent": "Beth"})
        self.assertEqual(status, 429)
        self.assertIn("limit of 2 verifications per day", body)
        r = self.sim.call("POST", "/sim/act", {"id": vs[2]["id"], "do": "send",
                                               "recipient": "x@example.net", "agent": "B"},
                          key=None)
        self.assertEqual((r.status, r.json()["error"]["code"]), (429, "daily_cap_reached"))
        self.assertEqual(self.sim.ok("GET", API + "/" + vs[2]["id"])["status"], "pending")
        # another user is not affected; the next day the user can verify again
        other = self.sim.create(5)
        self.sim.act(other["id"], "send", recipient="jane@example.com", agent="Beth")
        self.sim.ok("POST", "/sim/clock", {"advance": 86400}, key=None)
        self.sim.act(vs[3]["id"], "send", recipient="x@example.net", agent="Beth")


class FaultTest(SimCase):
    def setUp(self):
        self.sim.ok("POST", "/sim/faults", {}, key=None)
        self.sim.ok("POST", "/sim/stats/reset", key=None)

    def faults(self, **cfg):
        return self.sim.ok("POST", "/sim/faults", cfg, key=None)

    def test_fault_settings_round_trip_and_are_validated(self):
        cfg = self.faults(error_rate=0.25, error_codes=[502], methods=["POST"], seed=9)
        self.assertEqual(self.sim.ok("GET", "/sim/faults", key=None), cfg)
        self.assertEqual((cfg["path_prefix"], cfg["reset_rate"], cfg["burst_429"]), ("", 0, 1))
        for bad in ({"nonsense": 1}, {"latency_ms": "fast"}, {"reset_rate": True},
                    {"error_rate": -1}, {"methods": "POST"}, {"path_prefix": 5}):
            r = self.sim.call("POST", "/sim/faults", bad, key=None)
            self.assertEqual(r.status, 400, bad)
            self.assertEqual(r.json()["error"]["code"], "invalid_request")
        self.assertEqual(self.sim.ok("GET", "/sim/faults", key=None), cfg)  # unchanged

    def test_error_rate_answers_the_chosen_codes(self):
        self.faults(error_rate=1, error_codes=[500])
        r = self.sim.call("GET", API + "/changes")
        self.assertEqual((r.status, r.json()["error"]["code"]), (500, "internal_error"))
        self.faults(error_rate=1, error_codes=[502])
        r = self.sim.call("GET", API + "/changes")
        self.assertEqual(r.status, 502)  # from the load balancer: HTML
        self.assertTrue(r.headers["Content-Type"].startswith("text/html"))
        self.assertEqual(self.sim.ok("GET", "/sim/stats", key=None)["faults"], {"error": 2})

    def test_rate_429_sends_retry_after_in_bursts(self):
        self.faults(rate_429=0.5, burst_429=3, retry_after=7, seed=1)
        statuses = [self.sim.call("GET", API + "/changes") for _ in range(12)]
        first = next(i for i, r in enumerate(statuses) if r.status == 429)
        self.assertEqual([r.status for r in statuses[first:first + 3]], [429] * 3)
        r = statuses[first]
        self.assertEqual((r.headers["Retry-After"], r.json()["error"]["code"]),
                         ("7", "rate_limited"))

    def test_html_rate_answers_a_page_instead_of_json(self):
        self.faults(html_rate=1, html_status=503)
        r = self.sim.call("GET", API + "/changes")
        self.assertEqual(r.status, 503)
        self.assertTrue(r.headers["Content-Type"].startswith("text/html"))
        self.assertTrue(r.text.startswith("<!DOCTYPE html>"))
        self.faults(html_rate=1)
        self.assertEqual(self.sim.call("GET", API + "/changes").status, 200)

    def test_reset_rate_drops_the_connection_without_applying(self):
        self.faults(reset_rate=1, methods=["POST"])
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            self.sim.call("POST", API, create_body(1), headers={"Idempotency-Key": "reset-1"})
        self.faults()
        r = self.sim.call("POST", API, create_body(1), headers={"Idempotency-Key": "reset-1"})
        self.assertEqual(r.status, 201)  # nothing had been created

    def test_apply_then_drop_applies_and_a_replay_finds_it(self):
        self.faults(apply_then_drop_rate=1, methods=["POST"])
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            self.sim.call("POST", API, create_body(2), headers={"Idempotency-Key": "drop-1"})
        self.faults()
        r = self.sim.call("POST", API, create_body(2), headers={"Idempotency-Key": "drop-1"})
        self.assertEqual(r.status, 200)  # created by the dropped request

    def test_malformed_rate_truncates_the_json(self):
        self.faults(malformed_rate=1)
        r = self.sim.call("GET", API + "/changes")
        self.assertEqual(r.status, 200)
        with self.assertRaises(ValueError):
            r.json()

    def test_slow_rate_and_latency_delay_the_answer(self):
        self.faults(slow_rate=1, slow_ms=400)
        with self.assertRaises(TimeoutError):
            self.sim.call("GET", API + "/changes", timeout=0.15)
        t0 = time.monotonic()
        r = self.sim.call("GET", API + "/changes")
        self.assertEqual(r.status, 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.4)
        self.faults(latency_ms=250, jitter_ms=50)
        t0 = time.monotonic()
        self.sim.call("GET", API + "/changes")
        self.assertGreaterEqual(time.monotonic() - t0, 0.2)

    def test_slow_body_trickles_the_answer(self):
        self.faults(slow_body_rate=1, slow_body_ms=300)
        conn = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=10)
        try:
            t0 = time.monotonic()
            conn.request("GET", API + "/changes", headers={"Authorization": "Bearer " + KEY})
            r = conn.getresponse()
            headers_after = time.monotonic() - t0
            body = r.read()
            self.assertEqual(r.status, 200)
            self.assertLess(headers_after, 0.25)
            self.assertGreaterEqual(time.monotonic() - t0, 0.2)
            json.loads(body)  # complete, just slow
        finally:
            conn.close()
        self.assertEqual(self.sim.ok("GET", "/sim/stats", key=None)["faults"], {"slow_body": 1})

    def test_methods_and_path_prefix_select_requests(self):
        self.faults(error_rate=1, methods=["POST"])
        self.assertEqual(self.sim.call("GET", API + "/changes").status, 200)
        self.faults(error_rate=1, error_codes=[503], path_prefix=API + "/changes")
        self.assertEqual(self.sim.call("GET", API + "/changes").status, 503)
        self.assertEqual(self.sim.call("POST", API, create_body(3)).status, 201)
        self.faults(error_rate=1, error_codes=[500], path_prefix="/")
        self.assertEqual(self.sim.call("GET", "/sim/health", key=None).status, 200)
        self.assertEqual(self.sim.page("/outbox")[0], 500)  # pages are not spared by default
        self.faults(error_rate=1, path_prefix="/v1/")
        self.assertEqual(self.sim.page("/outbox")[0], 200)

    def test_client_errors_on_the_feed_and_their_retries_are_counted(self):
        self.faults(client_error_rate=1, client_error_codes=[404],
                    client_error_path=API + "/changes")
        r = self.sim.call("GET", API + "/changes?limit=5")
        self.assertEqual((r.status, r.json()["error"]["code"]), (404, "not_found"))
        self.assertEqual(self.sim.call("POST", API, create_body(5)).status, 201)
        self.sim.call("GET", API + "/changes?limit=5")
        stats = self.sim.ok("GET", "/sim/stats", key=None)
        self.assertEqual((stats["faults"]["client_error"], stats["client_error_repeats"]), (2, 1))

    def test_seed_makes_faults_reproducible(self):
        def run():
            self.faults(error_rate=0.5, error_codes=[500], seed=42)
            return [self.sim.call("GET", API + "/changes").status for _ in range(16)]
        first = run()
        self.assertEqual(run(), first)
        self.assertEqual(set(first), {200, 500})

    def test_stats_count_requests_by_route_and_status(self):
        v = self.sim.create(4)
        self.sim.call("GET", API + "/" + v["id"])
        self.sim.call("GET", API + "/changes")
        self.sim.call("GET", API + "/changes", key="bad")
        self.sim.call("POST", API + "/" + v["id"] + "/cancel", {})
        self.sim.page("/outbox")
        s = self.sim.ok("GET", "/sim/stats", key=None)
        self.assertEqual(s["requests"], {
            "POST " + API: 1, "GET " + API + "/{id}": 1, "GET " + API + "/changes": 2,
            "POST " + API + "/{id}/cancel": 1, "GET /outbox": 1})
        self.assertEqual(s["by_status"], {"201": 1, "200": 4, "401": 1})
        self.assertEqual((s["total"], s["faults"]), (6, {}))
        self.assertEqual(self.sim.ok("POST", "/sim/stats/reset", key=None)["total"], 0)

    def test_outage_answers_503_for_its_duration_on_the_sim_clock(self):
        self.sim.ok("POST", "/sim/outage", {"seconds": 30}, key=None)
        r = self.sim.call("GET", API + "/changes")
        self.assertEqual((r.status, r.json()["error"]["code"]), (503, "unavailable"))
        self.assertTrue(1 <= int(r.headers["Retry-After"]) <= 30)
        self.assertEqual(self.sim.call("POST", API, create_body(5)).status, 503)
        self.assertEqual(self.sim.page("/outbox")[0], 200)  # pages are not the API
        self.sim.ok("POST", "/sim/clock", {"advance": 31}, key=None)
        self.assertEqual(self.sim.call("GET", API + "/changes").status, 200)


class ProcessTest(unittest.TestCase):
    """Start-up options, restart with the same state, clean SIGTERM."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="imperai-sim-proc-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_port_file_and_api_key_file(self):
        keyfile = os.path.join(self.dir, "key")
        with open(keyfile, "w") as f:
            f.write("file-key-123\n")
        portfile = os.path.join(self.dir, "port")
        sim = Sim("--api-key-file", keyfile, "--port-file", portfile,
                  datadir=os.path.join(self.dir, "state"))
        try:
            with open(portfile) as f:
                self.assertEqual(int(f.read()), sim.port)
            self.assertEqual(sim.call("GET", API + "/changes").status, 401)
            self.assertEqual(sim.call("GET", API + "/changes", key="file-key-123").status, 200)
        finally:
            self.assertEqual(sim.stop(), 0)

    def test_in_memory_writes_nothing_and_a_restart_starts_empty(self):
        data = os.path.join(self.dir, "memory")
        sim = Sim("--in-memory", datadir=data)
        try:
            v = sim.create(1, key="dev/incident/1/1")
            self.assertEqual(sim.ok("GET", API + "/" + v["id"])["status"], "pending")
        finally:
            self.assertEqual(sim.stop(), 0)
        self.assertEqual(os.listdir(os.path.join(data, "verifications")), [])
        self.assertFalse(os.path.exists(os.path.join(data, "meta.json")))
        sim = Sim("--in-memory", datadir=data)
        try:
            self.assertEqual(sim.call("GET", API + "/" + v["id"]).status, 404)
        finally:
            self.assertEqual(sim.stop(), 0)

    def test_state_survives_a_restart(self):
        data = os.path.join(self.dir, "state")
        sim = Sim("--seed", "5", datadir=data)
        try:
            v = sim.create(1, key="dev/incident/1/1")
            sim.act(v["id"], "send", recipient="jane@example.com", agent="Beth")
            link = sim.ok("GET", "/sim/outbox", key=None)["messages"][0]["link"]
            sim.page(link)
            sim.page(link, {"q1": "a", "q2": "b", "q3": "c"})
            w = sim.create(2)
            now = sim.ok("POST", "/sim/clock", {"advance": 1000}, key=None)["now"]
            feed = sim.feed()
            before = {x["id"]: sim.ok("GET", API + "/" + x["id"]) for x in feed["data"]}
        finally:
            self.assertEqual(sim.stop(), 0)
        self.assertTrue(os.path.exists(os.path.join(data, "meta.json")))
        self.assertEqual([n for n in os.listdir(os.path.join(data, "verifications"))
                          if ".tmp." in n], [])
        sim = Sim("--seed", "5", datadir=data)
        try:
            base_old = urllib.parse.urlsplit(v["send_link_url"]).netloc
            for vid, obj in before.items():
                got = sim.ok("GET", API + "/" + vid)
                self.assertEqual(json.loads(json.dumps(got).replace(
                    urllib.parse.urlsplit(got["send_link_url"]).netloc, base_old)), obj)
            self.assertGreaterEqual(sim.ok("GET", "/sim/clock", key=None)["now"], now)
            r = sim.call("POST", API, create_body(1), headers={"Idempotency-Key":
                                                               "dev/incident/1/1"})
            self.assertEqual((r.status, r.json()["id"]), (200, v["id"]))
            self.assertEqual(sim.feed(feed["next_cursor"])["data"], [])
            sim.ok("POST", API + "/" + w["id"] + "/cancel", {})
            after = sim.feed(feed["next_cursor"])["data"]
            self.assertEqual([x["id"] for x in after], [w["id"]])
            link = link.replace(base_old, "127.0.0.1:%d" % sim.port)
            self.assertEqual(sim.page(link)[0], 410)  # used before the restart
            fresh = sim.create(3)
            self.assertNotIn(fresh["id"], before)
        finally:
            self.assertEqual(sim.stop(), 0)


def collect_answers():
    """Real simulator answers, named as the fixtures in tests/data/imperai."""
    sim = Sim("--seed", "1", "--public-url", "http://127.0.0.1:8081", "--daily-cap", "1")
    out = {}
    try:
        sim.ok("POST", "/sim/clock", {"set": FIXED_NOW, "freeze": True}, key=None)

        def save(name, kind, r):
            out[name] = (kind, r.body if isinstance(r, Resp) else json.dumps(r).encode())

        body = create_body(1)
        r = sim.call("POST", API, body, headers={"Idempotency-Key": "dev12345/incident/1/1"})
        save("verification-created.json", "verification", r)
        vid = r.json()["id"]
        save("verification-link-sent.json", "verification",
             sim.act(vid, "send", recipient="jane@example.com", agent="Beth Anglin"))
        save("verification-in-progress.json", "verification", sim.act(vid, "start"))
        sim.ok("POST", "/sim/clock", {"advance": 120}, key=None)
        save("verification-passed.json", "verification",
             sim.act(vid, "complete", outcome="passed", risk_score=2))
        save("verification-action-completed.json", "verification",
             sim.act(vid, "action", status="completed"))
        save("error-already-final.json", "error-verification",
             sim.call("POST", API + "/" + vid + "/cancel", {}))
        save("error-idempotency-conflict.json", "error",
             sim.call("POST", API, create_body(1, subject="changed"),
                      headers={"Idempotency-Key": "dev12345/incident/1/1"}))
        f = sim.create(2)
        sim.act(f["id"], "send", recipient="+15551234567", agent="Beth Anglin")
        save("verification-failed.json", "verification", sim.act(f["id"], "complete",
                                                                  outcome="failed"))
        n = sim.create(3)
        sim.act(n["id"], "send", recipient="jo@example.com", agent="Beth Anglin")
        save("verification-not-enough-questions.json", "verification",
             sim.act(n["id"], "complete", outcome="not_enough_questions"))
        save("verification-timed-out.json", "verification", sim.act(sim.create(4)["id"], "expire"))
        c = sim.create(5, requested_action="none")
        save("verification-canceled.json", "verification",
             sim.call("POST", API + "/" + c["id"] + "/cancel", {"reason": "requester changed"}))
        hostile = sim.create(6)
        save("verification-retargeted.json", "verification", sim.act(
            hostile["id"], "retarget", ticket={"number": "INC<script>alert(1)</script>",
                                               "url": "javascript:alert(1)"}))
        save("feed-page.json", "feed", sim.call("GET", API + "/changes?limit=4"))
        page = sim.feed(limit=500)
        save("feed-empty.json", "feed", sim.call("GET", API + "/changes?cursor=" +
                                                  page["next_cursor"]))
        save("error-unauthorized.json", "error", sim.call("GET", API + "/changes", key="nope"))
        save("error-not-found.json", "error", sim.call("GET", API + "/vr_nope"))
        save("error-invalid-request.json", "error", sim.call("POST", API, {"ticket": {}}))
        cap = sim.create(7, requester={"name": "J", "email": "jane1@example.com",
                                       "user_name": "j"})
        save("error-daily-cap.json", "error", sim.call(
            "POST", "/sim/act", {"id": cap["id"], "do": "send", "recipient": "a@example.com",
                                 "agent": "B"}, key=None))
        sim.ok("POST", "/sim/faults", {"rate_429": 1, "retry_after": 3}, key=None)
        save("error-rate-limited.json", "error", sim.call("GET", API + "/changes"))
        sim.ok("POST", "/sim/faults", {}, key=None)
        sim.ok("POST", "/sim/outage", {"seconds": 10}, key=None)
        save("error-outage.json", "error", sim.call("GET", API + "/changes"))
    finally:
        sim.close()
    return out


def broken_fixtures(good):
    """Hand-broken copies of real answers: the C test pins each cause."""
    passed = json.loads(good["verification-passed.json"][1])
    feed = json.loads(good["feed-page.json"][1])

    def variant(**changes):
        v = dict(passed)
        v.update(changes)
        return json.dumps(v).encode()

    no_id = dict(passed)
    del no_id["id"]
    bad_feed = json.loads(json.dumps(feed))
    bad_feed["data"][1]["action"]["status"] = "done"
    utf8 = variant(analysis_summary="PLACEHOLDER").replace(b"PLACEHOLDER", b"caf\xc3")
    return {
        "bad-verification-risk-string.json": variant(risk_score="2"),
        "bad-verification-status-unknown.json": variant(status="approved"),
        "bad-verification-time.json": variant(updated_at="2026-11-24 10:05:00"),
        "bad-verification-invalid-utf8.json": utf8,
        "bad-verification-missing-id.json": json.dumps(no_id).encode(),
        "bad-verification-ticket-array.json": variant(ticket=[passed["ticket"]]),
        "bad-verification-truncated.json": good["verification-passed.json"][1][:100],
        "bad-feed-item.json": json.dumps(bad_feed).encode(),
        "bad-feed-html.json": b"<!DOCTYPE html><html><body>Maintenance</body></html>\n",
    }


class SimAnswersTest(unittest.TestCase):
    """The simulator's answers, run through the C client's parsers."""

    @classmethod
    def setUpClass(cls):
        cls.answers = collect_answers()

    def test_write_fixtures_when_asked(self):
        target = os.environ.get("IMPERAI_WRITE_FIXTURES")
        if not target:
            self.skipTest("IMPERAI_WRITE_FIXTURES not set (set it to tests/data/imperai to "
                          "regenerate the C unit test's fixtures)")
        os.makedirs(target, exist_ok=True)
        files = {name: body for name, (_, body) in self.answers.items()}
        files.update(broken_fixtures(self.answers))
        for name, body in files.items():
            if name.endswith(".json") and body[-1:] != b"\n" and name.startswith(
                    ("verification", "feed", "error")):
                body = json.dumps(json.loads(body), indent=2).encode() + b"\n"
            with open(os.path.join(target, name), "wb") as f:
                f.write(body)

    def test_answers_have_the_shape_of_the_contract(self):
        for name, (kind, body) in self.answers.items():
            obj = json.loads(body)
            if kind == "verification":
                self.assertEqual(set(obj), set(VERIFICATION_FIELDS), name)
            elif kind == "feed":
                self.assertEqual(set(obj), {"data", "next_cursor", "has_more"}, name)
            else:
                self.assertEqual(set(obj), {"error"}, name)
                self.assertTrue({"code", "message"} <= set(obj["error"]), name)

    def test_c_parser_accepts_every_answer(self):
        tool = os.environ.get("IMPERAI_PARSE_CHECK")
        if not tool or not os.access(tool, os.X_OK):
            self.skipTest("IMPERAI_PARSE_CHECK not set to an executable: build "
                          "tests/unit/imperai_parse_check (make check does) to check the "
                          "simulator's answers against the C client's parser")
        for name, (kind, body) in self.answers.items():
            r = subprocess.run([tool, kind, "-"], input=body, capture_output=True, timeout=10)
            self.assertEqual((r.returncode, r.stdout.decode().strip()), (0, "OK"), name)
        for name, body in broken_fixtures(self.answers).items():
            kind = "feed" if name.startswith("bad-feed") else "verification"
            r = subprocess.run([tool, kind, "-"], input=body, capture_output=True, timeout=10)
            self.assertEqual(r.returncode, 1, name)
            self.assertTrue(r.stdout.startswith(b"FAIL: "), name)


def parse_check_tool(test):
    tool = os.environ.get("IMPERAI_PARSE_CHECK")
    if not tool or not os.access(tool, os.X_OK):
        test.skipTest("IMPERAI_PARSE_CHECK not set to an executable: build "
                      "tests/unit/imperai_parse_check (make check does) to run the C client "
                      "against the simulator")
    return tool


class CClientTest(unittest.TestCase):
    """The C client over the real lib/http.c against the simulator."""

    def run_client(self, sim):
        tool = parse_check_tool(self)
        r = subprocess.run([tool, "client", sim.base], capture_output=True, timeout=50)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = {}
        for line in r.stdout.decode().splitlines():
            name, *fields = line.split()
            out[name] = dict(f.split("=", 1) for f in fields)
        return out

    def check_run(self, sim, out, first_status):
        self.assertEqual((out["create"]["err"], out["create"]["state"]), ("0", "pending"))
        self.assertIn(out["create"]["status"], first_status)
        vid = out["create"]["id"]
        self.assertEqual(out["create-again"], {"err": "0", "status": "200", "id": vid,
                                               "state": "pending"})
        self.assertEqual(out["get"]["id"], vid)
        self.assertEqual(out["changes"], {"err": "0", "items": "6"})
        for call in ("cancel", "cancel-again"):
            self.assertEqual((out[call]["err"], out[call]["status"], out[call]["state"]),
                             ("0", "200", "canceled"))
        self.assertEqual((out["create-conflict"]["err"], out["create-conflict"]["status"]),
                         (str(-errno.EEXIST), "409"))
        dump = sim.ok("GET", "/sim/dump", key=None)["verifications"]
        keyed = [v for v in dump if (v["idem"] or {}).get("key", "").startswith("dev12345/")]
        self.assertEqual(len(keyed), 1)  # replays never made a second request

    def test_client_calls_against_the_simulator(self):
        parse_check_tool(self)
        sim = Sim()
        try:
            for i in range(5):
                sim.create(i)
            self.check_run(sim, self.run_client(sim), ("201",))
        finally:
            sim.close()

    def test_client_retries_through_faults_without_duplicates(self):
        parse_check_tool(self)
        sim = Sim("--faults", json.dumps({
            "apply_then_drop_rate": 0.15, "reset_rate": 0.1, "error_rate": 0.1,
            "rate_429": 0.05, "retry_after": 1, "seed": 7, "path_prefix": "/v1/"}))
        try:
            sim.ok("POST", "/sim/faults", {}, key=None)  # --faults worked; off while seeding
            for i in range(5):
                sim.create(i)
            sim.ok("POST", "/sim/faults", {
                "apply_then_drop_rate": 0.15, "reset_rate": 0.1, "error_rate": 0.1,
                "rate_429": 0.05, "retry_after": 1, "seed": 7, "path_prefix": "/v1/"},
                key=None)
            out = self.run_client(sim)
            faults = sim.ok("GET", "/sim/stats", key=None)["faults"]
            self.assertGreater(sum(faults.values()), 0)
            self.check_run(sim, out, ("200", "201"))
        finally:
            sim.close()


if __name__ == "__main__":
    unittest.main()
