#!/usr/bin/env python3
"""Hostile input (issue #7, item 3): answers from ServiceNow and imper.ai
that are malformed, of the wrong types, huge, deeply nested, not UTF-8,
carry NUL bytes, miss fields or repeat keys; ticket and imper.ai text that
carries HTML/JS; a verification naming another ticket; a result for an
unknown id; a Link header and a 302 pointing at another listener.

Each case checks three things: the daemon keeps running (and keeps
working: a ticket created afterwards still gets its link), it writes
nothing wrong (from the simulators' records: /sim/writes, the
verifications imper.ai holds, the requests a decoy listener received),
and it says what happened in one key=value line of its log naming what
and where.  Answers the simulators cannot produce come from /sim/script.

    python3 tests/integration/test_hostile.py [--figures FILE] [unittest args]

--figures FILE writes what the run did as JSON (make reliability's table):
cases run and how they ended, the scripted answers the daemon took from
each simulator, how often it was found running after a case, the checks
that it wrote nothing and kept working, and the requests the decoy got."""
import base64
import html.parser
import http.server
import json
import os
import re
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import IMPERAI_KEY, Http, Stack, wait_until  # noqa: E402

POLL = "/api/now/table/incident"
# What the run did (--figures): counted as the cases go.
FIGURES = {"answers_snow": 0, "answers_imperai": 0, "daemon_up": 0, "daemon_down": 0,
           "nothing_written_checks": 0, "still_working_checks": 0, "decoy_requests": 0}
FEED = "/v1/verification-requests/changes"
# A hostile answer is a failed poll: each is a debug line with its cause
# (the operator gets one warning per outage, not one per poll: see
# test_daemon.py QuietOutageTest).
SNOW_FAIL = r"^\S+ debug ServiceNow poll failed: will retry at the next interval " \
            r"table=incident error=\"GET incident: %s"
FEED_FAIL = r"^\S+ debug imper\.ai change feed failed: will retry at the next interval " \
            r"error=\"%s"


class Decoy:
    """A second loopback listener that records every request it gets: the
    host a hostile Link header or redirect points to."""

    def __init__(self):
        self.requests = []
        decoy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                decoy.requests.append((self.command, self.path, dict(self.headers)))
                body = b'{"result":[]}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_PATCH = do_GET

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class HostileCase(unittest.TestCase):
    """One stack per class: the daemon meets every case of the class in
    turn, so each case also checks that the ones before left it sound."""

    @classmethod
    def setUpClass(cls):
        cls.stack = Stack()
        try:
            cls.stack.start()
            cls.decoy = Decoy()
            cls.ticket = cls.stack.snow.create_ticket(category="password_reset")
            cls.verification = cls.stack.wait_verification(cls.ticket["number"])
            cls.stack.wait(lambda: cls.link_written(cls.ticket), 20, "the link in the field")
        except BaseException:
            cls.stack.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.decoy.close()
        cls.stack.close()

    @classmethod
    def link_written(cls, ticket):
        return any("u_imperai_verification" in w["fields"]
                   for w in cls.stack.snow.writes("incident", ticket["sys_id"]))

    def setUp(self):
        self.stack.snow.scripted_clear()
        self.stack.imperai.scripted_clear()
        self.mark = self.stack.daemon.log_size()
        self.writes = self.stack.snow.writes()
        self.vids = sorted(v["id"] for v in self.stack.imperai.verifications())
        self.decoy.requests.clear()

    def tearDown(self):
        try:
            FIGURES["answers_snow"] += len(self.stack.snow.scripted_state()["seen"])
            FIGURES["answers_imperai"] += len(self.stack.imperai.scripted_state()["seen"])
        except Exception:   # noqa: BLE001 -- a dead simulator fails the case below
            pass
        FIGURES["decoy_requests"] += len(self.decoy.requests)
        running = self.stack.daemon.running()
        FIGURES["daemon_up" if running else "daemon_down"] += 1
        self.assertTrue(running, "the daemon died\n" + self.stack.logs())

    # -- helpers -----------------------------------------------------------------

    def consumed(self, sim):
        self.stack.wait(lambda: not sim.scripted_state()["rules"], 20,
                        "the daemon to take the scripted answer")

    def log_line(self, pattern, what):
        """The one line logged since setUp that matches pattern."""
        rx = re.compile(pattern)

        def found():
            return [line for line in self.stack.daemon.lines_since(self.mark) if rx.search(line)]
        lines = self.stack.wait(found, 20, "a log line for " + what)
        line = lines[0]
        print("\n  %s: %s" % (what, line[:300]), file=sys.stderr)
        self.assertRegex(line, r"^\S+ (err|warning|notice|info|debug) ")
        self.assertRegex(line, r" [a-z_]+=\S")
        return line

    def assert_nothing_written(self):
        self.assertEqual(self.stack.snow.writes(), self.writes, "ServiceNow got writes")
        self.assertEqual(sorted(v["id"] for v in self.stack.imperai.verifications()), self.vids,
                         "imper.ai got a request")
        FIGURES["nothing_written_checks"] += 1

    def assert_still_working(self):
        """A new ticket still gets its verification and link."""
        t = self.stack.snow.create_ticket(category="password_reset")
        self.stack.wait_verification(t["number"])
        self.stack.wait(lambda: self.link_written(t), 20, "the link in a new ticket's field")
        FIGURES["still_working_checks"] += 1


class ServiceNowAnswersTest(HostileCase):
    """Hostile answers to the daemon's poll of the incident table."""

    def hostile_poll(self, answer, error, what):
        """Scripts the next poll answer; checks the line, that nothing was
        written and that the daemon lives on."""
        self.stack.snow.scripted("GET", POLL, [answer])
        self.consumed(self.stack.snow)
        line = self.log_line(SNOW_FAIL % error, what)
        self.assert_nothing_written()
        return line

    def record(self, **fields):
        """A record that the policy would take up (category password_reset)
        for a ticket the simulator does not have: accepting it would send a
        create to imper.ai."""
        rec = {"sys_id": "f" * 32, "number": "INC0099999", "sys_mod_count": "0",
               "sys_updated_on": "2030-01-01 00:00:00", "state": "1", "active": "true",
               "category": "password_reset", "caller_id": "abel.tuter",
               "short_description": "hostile"}
        rec.update(fields)
        return rec

    def page(self, **fields):
        return json.dumps({"result": [self.record(**fields)]})

    def test_truncated_json(self):
        self.hostile_poll({"body": self.page()[:40]}, r"answer is truncated JSON", "truncated")

    def test_not_json(self):
        self.hostile_poll({"body": "result: yes", "ctype": "application/json"}, r".*JSON",
                          "not JSON")

    def test_wrong_type_of_a_field(self):
        self.hostile_poll({"body": self.page(state=2)},
                          r"result\[0\]\.state: expected a string, got int", "an int field")

    def test_wrong_type_of_result(self):
        self.hostile_poll({"body": json.dumps({"result": self.record()})},
                          r"..result.. is object, expected array", "result as an object")
        self.mark = self.stack.daemon.log_size()
        self.hostile_poll({"body": '{"result":null}'}, r".*result", "result null")

    def test_huge_body_of_100_mb(self):
        line = self.hostile_poll({"size": 100 * 1024 * 1024, "prefix": '{"result":[{"x":"',
                                  "suffix": '"}]}'}, r".*answer over \d+ bytes", "100 MB")
        self.assertIn(self.stack.snow.url, line)

    def test_one_field_of_2_mb(self):
        self.hostile_poll({"body": self.page(short_description="A" * (2 << 20))},
                          r".*short_description", "a 2 MB field")

    def test_deep_nesting(self):
        body = '{"result":[' + '{"a":' * 5000 + '1' + '}' * 5000 + ']}'
        self.hostile_poll({"body": body}, r"answer nests deeper than \d+ levels", "nesting")

    def test_invalid_utf8(self):
        raw = self.page(short_description="XX").replace('"XX"', '"\\u00ff\\u00fe"').encode()
        raw = raw.replace(b"\\u00ff\\u00fe", b"\xff\xfe\xc3")
        self.hostile_poll({"body_b64": base64.b64encode(raw).decode()}, r".*UTF-8",
                          "invalid UTF-8")

    def test_escaped_nul_in_a_value(self):
        self.hostile_poll({"body": self.page(short_description="a\u0000b")}, r".*NUL",
                          "an escaped NUL")

    def test_raw_nul_byte_in_the_body(self):
        raw = self.page().encode().replace(b'"hostile"', b'"host\x00ile"')
        self.hostile_poll({"body_b64": base64.b64encode(raw).decode()}, r".*",
                          "a raw NUL byte")

    def test_missing_sys_id(self):
        rec = self.record()
        del rec["sys_id"]
        self.hostile_poll({"body": json.dumps({"result": [rec]})}, r".*sys_id", "no sys_id")

    def test_bad_sys_id(self):
        self.hostile_poll({"body": self.page(sys_id="../../etc/passwd")}, r".*sys_id",
                          "a path as sys_id")

    def test_html_answer_of_a_hibernating_instance(self):
        self.hostile_poll({"body": "<html><body>Instance hibernating</body></html>",
                           "ctype": "text/html"}, r".*", "an HTML page")

    def test_duplicate_keys_last_wins(self):
        # The ticket is real and out of every flow: a first "category" that
        # matches the flow must not win over the last, which does not.
        t = self.stack.snow.create_ticket(category="inquiry")
        self.stack.wait(lambda: any(line for line in self.stack.daemon.lines_since(self.mark)
                                    if t["number"] in line or "poll cycle done" in line),
                        20, "a poll after the ticket exists")
        rec = self.stack.snow.ticket("incident", t["sys_id"])
        rec = {k: (v if isinstance(v, str) else "") for k, v in rec.items()}
        body = json.dumps({"result": [rec]})
        body = body.replace('"category": "inquiry"',
                            '"category": "password_reset", "category": "inquiry"')
        self.assertIn('"category": "password_reset", "category": "inquiry"', body)
        self.stack.snow.scripted("GET", POLL, [{"body": body}])
        self.consumed(self.stack.snow)
        self.stack.wait(lambda: any("poll cycle done" in line
                                    for line in self.stack.daemon.lines_since(self.mark)),
                        20, "a poll cycle after the scripted answer")
        self.assertIsNone(self.stack.imperai.verification_for(t["number"]))
        self.assertEqual(self.stack.snow.writes("incident", t["sys_id"])[1:], [])
        self.assertFalse([line for line in self.stack.daemon.lines_since(self.mark)
                          if "poll failed" in line])

    def test_link_header_pointing_elsewhere_is_not_followed(self):
        link = '<%s/api/now/table/incident?sysparm_offset=100>;rel="next"' % self.decoy.url
        self.stack.snow.scripted("GET", POLL, [{"body": '{"result":[]}',
                                                "headers": [["Link", link]]}] * 3)
        self.consumed(self.stack.snow)
        self.assert_still_working()
        self.assertEqual(self.decoy.requests, [])

    def test_redirect_to_another_host_is_refused_and_credentials_stay(self):
        where = self.decoy.url + "/api/now/table/incident"
        line = self.hostile_poll({"status": 302, "headers": [["Location", where]]},
                                 r".*302 to %s" % re.escape(where), "a redirect")
        self.assertIn("not followed", line)
        self.assert_still_working()
        self.assertEqual(self.decoy.requests, [], "the redirect was followed")

    def test_redirect_of_a_patch_sends_nothing_to_the_other_host(self):
        where = self.decoy.url + "/elsewhere"
        self.stack.snow.scripted("PATCH", path_prefix=POLL + "/", answers=[
            {"status": 302, "headers": [["Location", where]]}])
        t = self.stack.snow.create_ticket(category="password_reset")
        self.consumed(self.stack.snow)
        self.log_line(r"write failed: will retry ticket=%s .*302" % t["number"], "the PATCH")
        self.stack.wait(lambda: self.link_written(t), 30, "the link after the retry")
        for method, path, headers in self.decoy.requests:
            self.assertNotIn("Authorization", headers)
            self.assertNotIn("Cookie", headers)
        self.assertEqual(self.decoy.requests, [])
        notes = [w for w in self.stack.snow.writes("incident", t["sys_id"])
                 if "work_notes" in w["fields"]]
        self.assertEqual(len(notes), 1, notes)


class ImperaiAnswersTest(HostileCase):
    """Hostile answers from imper.ai: its change feed and its create."""

    def feed_item(self, vid):
        """The request as imper.ai's API returns it: a valid feed item."""
        api = Http(self.stack.imperai.url)
        api.auth = "Bearer " + IMPERAI_KEY
        return api.ok("GET", "/v1/verification-requests/" + vid)

    def feed(self, *items, raw=None):
        return raw if raw is not None else json.dumps(
            {"data": list(items), "next_cursor": "djE6MA", "has_more": False})

    def hostile_feed(self, answer, error, what):
        self.stack.imperai.scripted("GET", FEED, [answer])
        self.consumed(self.stack.imperai)
        line = self.log_line(FEED_FAIL % error, what)
        self.assert_nothing_written()
        return line

    def passed_item(self, **changes):
        item = self.feed_item(self.verification["id"])
        item.update(status="passed", risk_score=1, completed_at=item["updated_at"],
                    recommendation="User verified successfully - Proceed with action")
        item.update(changes)
        return item

    def test_truncated_feed(self):
        self.hostile_feed({"body": self.feed(self.passed_item())[:50]}, r"change feed: .*JSON",
                          "truncated")

    def test_wrong_type_in_an_item(self):
        self.hostile_feed({"body": self.feed(self.passed_item(risk_score="low"))},
                          r"change feed: data\[0\]\.risk_score", "risk as a string")

    def test_wrong_type_of_data(self):
        self.hostile_feed({"body": json.dumps({"data": {}, "next_cursor": None,
                                               "has_more": False})},
                          r"change feed: data", "data as an object")

    def test_huge_feed_of_100_mb(self):
        self.hostile_feed({"size": 100 * 1024 * 1024, "prefix": '{"data":[{"id":"',
                           "suffix": '"}]}'}, r".*too large", "100 MB")

    def test_one_field_of_1_mb(self):
        prefix, suffix = self.feed(self.passed_item(recommendation="@@")).split("@@")
        self.hostile_feed({"size": 1 << 20, "fill": "R", "prefix": prefix, "suffix": suffix},
                          r"change feed: data\[0\]\.recommendation", "a 1 MB field")

    def test_deep_nesting(self):
        item = json.dumps(self.passed_item())
        body = '{"data":[' + item[:-1] + ',"x":' + '[' * 5000 + ']' * 5000 + '}]}'
        self.hostile_feed({"body": body}, r"change feed: ", "nesting")

    def test_invalid_utf8(self):
        raw = self.feed(self.passed_item(recommendation="@@")).encode()
        raw = raw.replace(b"@@", b"\xc0\xaf\xed\xa0\x80")
        self.hostile_feed({"body_b64": base64.b64encode(raw).decode()},
                          r"change feed: .*UTF-8", "invalid UTF-8")

    def test_nul_in_a_value(self):
        self.hostile_feed({"body": self.feed(self.passed_item(initiated_by="Ivy\u0000<b>"))},
                          r"change feed: data\[0\]\.initiated_by", "an escaped NUL")

    def test_raw_nul_byte_in_the_feed(self):
        raw = self.feed(self.passed_item(initiated_by="Ivy@@")).encode()
        raw = raw.replace(b"@@", b"\x00<script>")
        self.hostile_feed({"body_b64": base64.b64encode(raw).decode()}, r"change feed: ",
                          "a raw NUL byte")

    def test_missing_id(self):
        item = self.passed_item()
        del item["id"]
        self.hostile_feed({"body": self.feed(item)}, r"change feed: data\[0\]\.id", "no id")

    def test_result_for_an_unknown_id_is_ignored_and_logged(self):
        item = self.passed_item(id="vr_000000unknown")
        self.stack.imperai.scripted("GET", FEED, [{"body": self.feed(item)}])
        self.consumed(self.stack.imperai)
        self.log_line(r"^\S+ warning security: verification for a request this daemon did "
                      r"not make ignored "
                      r"verification=vr_000000unknown ticket=%s" % self.ticket["number"],
                      "the unknown id")
        self.assert_nothing_written()

    def test_duplicate_keys_last_wins(self):
        # The first "id" is the ticket's own request, the last one unknown:
        # the last wins, so the outcome is not applied to the ticket.
        item = json.dumps(self.passed_item(id="vr_000000unknown"))
        item = item.replace('"id": "vr_000000unknown"',
                            '"id": "%s", "id": "vr_000000unknown"' % self.verification["id"])
        self.stack.imperai.scripted("GET", FEED, [{"body": self.feed(raw='{"data":[%s],'
                                                                         '"next_cursor":"djE6MA",'
                                                                         '"has_more":false}'
                                                                         % item)}])
        self.consumed(self.stack.imperai)
        self.log_line(r"did not make ignored verification=vr_000000unknown", "duplicate id")
        self.assert_nothing_written()

    def test_redirect_to_another_host_is_refused_and_credentials_stay(self):
        where = self.decoy.url + FEED
        self.stack.imperai.scripted("GET", FEED, [{"status": 302,
                                                   "headers": [["Location", where]]}])
        self.consumed(self.stack.imperai)
        self.log_line(r"^\S+ debug imper\.ai change feed failed: .*302", "a redirect")
        self.assert_nothing_written()
        self.assert_still_working()
        self.assertEqual(self.decoy.requests, [], "the redirect was followed")

    def test_redirect_of_a_create_sends_nothing_to_the_other_host(self):
        where = self.decoy.url + "/v1/verification-requests"
        self.stack.imperai.scripted("POST", "/v1/verification-requests", [
            {"status": 302, "headers": [["Location", where]]}])
        t = self.stack.snow.create_ticket(category="password_reset")
        self.consumed(self.stack.imperai)
        self.log_line(r"write failed: will retry ticket=%s effect=create .*302" % t["number"],
                      "the create")
        self.stack.wait_verification(t["number"], 30)
        self.assertEqual(self.decoy.requests, [], "the redirect was followed")

    def test_create_answer_with_a_javascript_link_writes_no_link(self):
        # The create lands (apply) but the answer names a javascript: link
        # and a details page on another host: neither reaches the field.
        t = None

        def hostile_create():
            return {"apply": True, "status": 201, "body": json.dumps({
                "id": "vr_hostile00001", "status": "pending",
                "ticket": {"instance": "x", "table": "incident", "sys_id": t["sys_id"],
                           "number": t["number"], "url": None},
                "send_link_url": "javascript:alert(document.cookie)",
                "details_url": "https://evil.example/x",
                "expires_at": "2099-01-01T00:00:00Z", "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z", "risk_score": None,
                "action": {"type": "password_reset", "status": "pending",
                           "completed_at": None, "automated": False}})}
        self.stack.snow.scripted("PATCH", path_prefix=POLL + "/", answers=[{"pass": True}] * 4)
        # The ticket's sys_id is needed in the answer: script it once the
        # ticket exists, before the daemon's first poll can see it.
        self.stack.imperai.scripted("POST", "/v1/verification-requests",
                                    [{"status": 503, "body": "{}"}])
        t = self.stack.snow.create_ticket(category="password_reset")
        self.stack.imperai.scripted("POST", "/v1/verification-requests", [hostile_create()])
        self.stack.wait(lambda: self.link_written(t), 40, "the field of the hostile create")
        for w in self.stack.snow.writes("incident", t["sys_id"]):
            for value in w["fields"].values():
                self.assertNotIn("javascript:", value)
                self.assertNotIn("evil.example", value)
        for s in self.stack.snow.scripted_state()["seen"]:
            self.assertNotIn("javascript:", s["body"])
            self.assertNotIn("evil.example", s["body"])


class TagCollector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))


class InjectionTest(HostileCase):
    """HTML/JS in ticket fields and in what imper.ai reports: every byte
    the daemon sends to ServiceNow (read from the raw PATCH bodies the
    simulator recorded, before its own sanitizer) is escaped."""

    SCRIPT = "<script>alert(1)</script>"
    JS_LINK = '<a href="javascript:alert(2)">click</a>'
    ATTR = '" onmouseover="alert(3)'
    CODE = "[code]<b>4</b>[/code]"     # HTML in a ServiceNow journal entry

    def test_injection_in_ticket_and_imperai_text_is_escaped(self):
        snow, imp = self.stack.snow, self.stack.imperai
        snow.scripted("PATCH", path_prefix=POLL + "/", answers=[{"pass": True}] * 20)
        t = snow.create_ticket(category="password_reset",
                               short_description=self.SCRIPT + self.ATTR + self.CODE,
                               description=self.JS_LINK + self.ATTR + self.CODE)
        v = self.stack.wait_verification(t["number"])
        imp.act(v["id"], "send", recipient="abel@example.org",
                agent=self.ATTR + self.SCRIPT + self.CODE)
        imp.act(v["id"], "complete", outcome="passed", risk_score=1)
        self.stack.wait_status(t["number"], "passed")
        self.stack.wait(lambda: len(snow.scripted_state()["seen"]) >= 2, 20, "two PATCHes")
        allowed_hosts = ("http://127.0.0.1:%d/" % imp.port,)
        fields = []
        for s in snow.scripted_state()["seen"]:
            body = json.loads(s["body"])
            field = body.get("u_imperai_verification")
            if field:
                fields.append(field)
            for name, text in body.items():
                self.assertNotIn("<script", text)
                self.assertNotIn("javascript:", text)
                if name == "work_notes":    # [code] means HTML in a journal only
                    self.assertNotIn("[code]", text.lower())
        self.assertTrue(fields)
        for field in fields:
            c = TagCollector()
            c.feed(field)
            for tag, attrs in c.tags:
                self.assertIn(tag, ("h3", "p", "br", "strong", "small", "a"), field)
                for name, value in attrs:
                    self.assertIn(name, ("class", "href"), field)
                    if name == "href":
                        self.assertTrue(value.startswith(allowed_hosts), value)
        # The agent's name is shown, as text.
        self.assertIn("&quot; onmouseover=&quot;alert(3)&lt;script&gt;", fields[-1])
        # imper.ai got the ticket's text as data, unchanged.
        self.assertEqual(imp.verification_for(t["number"])["subject"],
                         self.SCRIPT + self.ATTR + self.CODE)


class RetargetTest(HostileCase):
    """A verification whose ticket reference is changed to another ticket
    (/sim/act retarget): refused and logged as a security event; nothing is
    written to either ticket."""

    def test_retargeted_result_is_refused_and_nothing_written(self):
        snow, imp = self.stack.snow, self.stack.imperai
        a = self.ticket
        b = snow.create_ticket(category="password_reset")
        vb = self.stack.wait_verification(b["number"])
        self.stack.wait(lambda: self.link_written(b), 20, "b's link")
        self.mark = self.stack.daemon.log_size()
        before = snow.writes()
        imp.act(self.verification["id"], "retarget",
                ticket={"sys_id": b["sys_id"], "number": b["number"]})
        imp.act(self.verification["id"], "send", recipient="abel@example.org", agent="Ivy")
        imp.act(self.verification["id"], "complete", outcome="passed", risk_score=1)
        line = self.log_line(r"^\S+ err security: verification names another ticket "
                             r"ticket=%s verification=%s .*reported_sys_id=%s"
                             % (a["number"], self.verification["id"], b["sys_id"]),
                             "the retarget")
        self.assertIn("sys_id=%s" % a["sys_id"], line)
        # The feed has moved past it: a later change of b's own request is
        # applied, and nothing was written for a's request to either ticket.
        imp.act(vb["id"], "send", recipient="beth@example.org", agent="Ivy")
        self.stack.wait_status(b["number"], "link_sent")
        self.stack.wait(lambda: len(snow.writes()) > len(before), 20, "b's sent write")
        after = snow.writes()[len(before):]
        self.assertEqual([w["sys_id"] for w in after], [b["sys_id"]], after)
        self.assertNotIn("Passed", json.dumps(after))
        self.assertEqual(self.stack.ctl_json("list", "--json", "--ticket", a["number"])[0]
                         ["status"], "pending")
        audit = self.stack.ctl("audit", "export")
        self.assertIn("security", audit.stdout)


def main(argv):
    figures = None
    if "--figures" in argv:
        i = argv.index("--figures")
        figures = argv[i + 1]
        del argv[i:i + 2]
    result = unittest.main(argv=[sys.argv[0]] + argv, verbosity=2, exit=False).result
    ok = result.wasSuccessful()
    if figures:
        FIGURES.update(cases=result.testsRun, failures=len(result.failures),
                       errors=len(result.errors), skipped=len(result.skipped), ok=ok)
        with open(figures, "w") as f:
            json.dump(FIGURES, f, indent=1, sort_keys=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
