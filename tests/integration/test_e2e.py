#!/usr/bin/env python3
"""End-to-end scenarios: imperai-snowd between the ServiceNow and imper.ai
simulators, driven the way the people in the flow drive it (the agent's
send page, the requester's mailbox, verification and password-reset
pages) and checked against the simulators' own records: the ServiceNow
write log (/sim/writes), its journal (/sim/journal), the ticket through
the Table API, request counters (/sim/stats, the --verbose request log)
and imper.ai's full state (/sim/dump).  Never the daemon's log.

Every wait is for a condition of the simulators (or of the store, through
imperai-snowctl); the polls are 1 s, so each step takes a second or two."""
import os
import re
from html import unescape as html_unescape
import ssl
import sys
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import SNOW_USER, Stack  # noqa: E402

SHIPPED_FLOWS = os.path.join(harness.TOP_SRC, "etc", "flows.yaml")
FIELD = "u_imperai_verification"
TAG = re.compile(r"^\[imper\.ai (\S+) (\d+)\.(\d+)\]\n")
REF = re.compile(r"imperai-snow ref (\d+)\.(\d+)")
SEND_LINK = re.compile(r'<a href="([^"]+)">imper\.ai - Send Verification link</a>')
SEND_AGAIN = re.compile(r'<a href="([^"]+)">imper\.ai - Send the link again</a>')
ID_LINK = re.compile(r'Verification ID: <a href="([^"]+)">([^<]+)</a>')
FEED = "GET /v1/verification-requests/changes"
CREATE = "POST /v1/verification-requests"
CANCEL = "POST /v1/verification-requests/{id}/cancel"
RECOMMEND_REJECT = "High risk detected - Reject this request"
PASSWORD = "N3w-passw0rd-long-enough"


def shipped_flows():
    with open(SHIPPED_FLOWS) as f:
        return f.read()


def browse(url, form=None, ca_file=None):
    """(status, html) of a simulator page: GET, or POST of form fields as a
    browser submits a form (application/x-www-form-urlencoded); https
    verified against ca_file."""
    data = None if form is None else urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else None
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Scenario:
    """A Stack plus what the people in the flow do and what the simulators
    recorded, per ticket."""

    def __init__(self, test, flows=None, tables=("incident",), verbose=False, tls=False,
                 snow_extra=""):
        self.test = test
        self.stack = Stack(test, flows=shipped_flows() if flows is None else flows,
                           tables=tables, snow_args=["--verbose"] if verbose else [], tls=tls,
                           snow_extra=snow_extra)
        self.snow = self.stack.snow
        self.imp = self.stack.imperai
        self.tables = list(tables)

    def start(self):
        self.stack.start()
        return self

    def close(self):
        self.stack.close()

    def stop_daemon(self):
        """SIGTERM; the daemon must be gone within the harness's 5 s, exit 0."""
        self.test.assertEqual(self.stack.stop_daemon(), 0, self.stack.daemon.log(30))

    # -- the simulators' records -------------------------------------------------

    def writes(self, t):
        return self.snow.control.ok("GET", "/sim/writes?table=%s&sys_id=%s"
                                    % (t["table"], t["sys_id"]))

    def notes(self, t):
        """Work notes the integration user wrote on ticket t, oldest first."""
        return [j["value"] for j in self.snow.control.ok(
            "GET", "/sim/journal?table=%s&sys_id=%s" % (t["table"], t["sys_id"]))
            if j["element"] == "work_notes" and j["sys_created_by"] == SNOW_USER]

    def tags(self, t):
        """[(tag, "G.R")] of the work notes, checking each carries its tag."""
        out = []
        for n in self.notes(t):
            m = TAG.match(n)
            self.test.assertIsNotNone(m, "work note without an [imper.ai tag G.R] line: %r" % n)
            out.append((m.group(1), "%s.%s" % (m.group(2), m.group(3))))
        return out

    def field(self, t):
        """The field as last written (from the write log: no Table API request)."""
        values = [w["fields"][FIELD] for w in self.writes(t) if FIELD in w["fields"]]
        return values[-1] if values else None

    def record(self, t):
        """The ticket through the Table API, as an agent's browser reads it."""
        return self.snow.ticket(t["table"], t["sys_id"])

    def requests_for(self, t):
        """Every request imper.ai holds for ticket t, oldest first."""
        return sorted((v for v in self.imp.verifications()
                       if v["ticket"]["sys_id"] == t["sys_id"]), key=lambda v: v["n"])

    def verification(self, vid):
        return [v for v in self.imp.verifications() if v["id"] == vid][0]

    def snow_stats(self):
        return self.snow.control.ok("GET", "/sim/stats")["requests"]

    def imp_stats(self):
        return self.imp.control.ok("GET", "/sim/stats")["requests"]

    def list_gets(self):
        s = self.snow_stats()
        return sum(s.get("GET /api/now/table/%s" % tb, 0) for tb in self.tables)

    # -- waiting -----------------------------------------------------------------

    def wait(self, pred, what, timeout=20.0):
        return self.stack.wait(pred, timeout, what)

    def wait_tag(self, t, tag, count=1):
        """Until ticket t has count work notes tagged tag; returns the last one."""
        def seen():
            found = [n for n in self.notes(t) if TAG.match(n) and TAG.match(n).group(1) == tag]
            return found[-1] if len(found) >= count else None
        return self.wait(seen, "%d work note(s) [imper.ai %s] on %s" % (count, tag, t["number"]))

    def settle(self, rounds=2):
        """Until the daemon has read both sides rounds more times: whatever
        it was going to do about what happened before is done by then."""
        snow0, feed0 = self.list_gets(), self.imp_stats().get(FEED, 0)
        self.wait(lambda: self.list_gets() >= snow0 + rounds * len(self.tables) and
                  self.imp_stats().get(FEED, 0) >= feed0 + rounds,
                  "%d more polls of each side" % rounds)

    # -- what people do ----------------------------------------------------------

    def browse(self, url, form=None):
        return browse(url, form, self.stack.ca_file)

    def create(self, table="incident", caller="abel.tuter", **fields):
        rec = self.snow.create_ticket(table, caller, **fields)
        rec["table"] = table
        return rec

    def wait_link(self, t, generation=1):
        """Until the field shows a send link of generation; returns (field, url)."""
        def linked():
            f = self.field(t)
            m = f and REF.search(f)
            return f if m and int(m.group(1)) == generation and SEND_LINK.search(f) else None
        f = self.wait(linked, "the send link (generation %d) in %s" % (generation, t["number"]))
        return f, SEND_LINK.search(f).group(1).replace("&amp;", "&")

    def send(self, t, url, recipient="abel.private@example.org", agent="Ivy Agent"):
        """The agent clicks the link in the field and fills in the send page."""
        status, html = self.browse(url)
        self.test.assertEqual(status, 200, html)
        self.test.assertIn(t["number"], html)
        status, html = self.browse(url, {"recipient": recipient, "agent": agent})
        self.test.assertEqual(status, 200, html)
        self.test.assertIn('id="sent"', html)

    def mailbox_link(self, t, to="abel.private@example.org"):
        """The link in the message to `to` about ticket t, read from the
        outbox page as the requester's mail client would show it."""
        status, html = self.browse(self.imp.url + "/outbox")
        self.test.assertEqual(status, 200, html)
        row = re.compile(r'<tr class="message"><td class="to">([^<]*)</td>.*?'
                         r'<td class="ticket">([^<]*)</td><td><a class="verify-link" '
                         r'href="([^"]+)">')
        links = [html_unescape(m.group(3)) for m in row.finditer(html)
                 if html_unescape(m.group(1)) == to and m.group(2) == t["number"]]
        self.test.assertTrue(links, "no message to %s for %s in imper.ai's outbox"
                             % (to, t["number"]))
        return links[0]

    def open_verification(self, link):
        """The requester follows the link in the message (in_progress)."""
        status, html = self.browse(link)
        self.test.assertEqual(status, 200, html)
        return html

    def answer(self, link, answers=("blue", "Springfield", "Rex")):
        """The requester answers; returns the result page."""
        form = {"q%d" % (i + 1): a for i, a in enumerate(answers)}
        status, html = self.browse(link, form)
        self.test.assertEqual(status, 200, html)
        return html

    def reset_password(self, result_page):
        m = re.search(r'id="reset-link" href="([^"]+)"', result_page)
        self.test.assertIsNotNone(m, "no password-reset link after the pass:\n" + result_page)
        status, html = self.browse(m.group(1), {"password": PASSWORD, "confirm": PASSWORD})
        self.test.assertEqual(status, 200, html)
        self.test.assertIn('id="done"', html)

    def act(self, vid, do, **kw):
        return self.imp.act(vid, do, **kw)

    def verify_through_pages(self, t, answers=("blue", "Springfield", "Rex"), wait=True):
        """Send page -> mailbox -> verification page; returns the result page.
        With wait, each step waits for its work note (sent, progress)."""
        _, url = self.wait_link(t)
        self.send(t, url)
        if wait:
            self.wait_tag(t, "sent")
        link = self.mailbox_link(t)
        self.open_verification(link)
        if wait:
            self.wait_tag(t, "progress")
        return self.answer(link, answers)

    # -- checks ----------------------------------------------------------------------

    def assert_one_note_per_event(self, t, expected):
        """The notes carry exactly the tags expected, in order, each once,
        with strictly increasing revisions."""
        tags = self.tags(t)
        self.test.assertEqual([x[0] for x in tags], list(expected),
                              "work notes of %s:\n%s" % (t["number"], "\n---\n".join(self.notes(t))))
        revs = [tuple(int(p) for p in x[1].split(".")) for x in tags]
        self.test.assertEqual(revs, sorted(set(revs)), "revisions repeat or go back: %s" % tags)

    def assert_link_host(self, url):
        self.test.assertTrue(url.startswith(self.imp.url + "/"),
                             "link %s does not point to the imper.ai host %s" % (url, self.imp.url))


def parse_verbose_log(path):
    """(method, path) of each request the ServiceNow simulator logged."""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            m = re.search(r'"([A-Z]+) (\S+) HTTP/1\.[01]"', line)
            if m:
                out.append((m.group(1), m.group(2)))
    return out


class HappyPathTest(unittest.TestCase):
    """One password-reset incident from creation to closure, as people do it."""

    def test_happy_path(self):
        sc = Scenario(self, verbose=True).start()
        t = sc.create(category="password_reset", short_description="Forgot my password")
        field, url = sc.wait_link(t)
        sc.assert_link_host(url)
        writes = sc.writes(t)
        time_to_field = [w for w in writes if FIELD in w["fields"]][0]["at_ms"] - writes[0]["at_ms"]
        self.assertEqual(writes[0]["method"], "POST")
        self.assertIn("imper.ai - Send Verification link", field)

        sc.send(t, url)
        sc.wait_tag(t, "sent")
        link = sc.mailbox_link(t)
        sc.assert_link_host(link)
        sc.open_verification(link)
        sc.wait_tag(t, "progress")
        result = sc.answer(link)
        self.assertIn("Verification passed", result)
        outcome = sc.wait_tag(t, "outcome")
        self.assertIn("Verification Outcome: Passed", outcome)
        self.assertIn("Not resolved automatically: the password reset is not completed yet",
                      outcome)
        sc.reset_password(result)
        resolved = sc.wait_tag(t, "resolved")
        sc.settle()
        snow_log = parse_verbose_log(sc.snow.log_path)
        snow_stats, imp_stats = sc.snow_stats(), sc.imp_stats()

        # What the agent sees, read as the agent's browser reads it.
        rec = sc.record(t)
        vr = sc.requests_for(t)
        self.assertEqual(len(vr), 1, vr)
        vid = vr[0]["id"]
        self.assertEqual(vr[0]["status"], "passed")
        self.assertEqual(vr[0]["action"]["status"], "completed")
        f = rec[FIELD]
        self.assertIn("Verification Outcome: Passed", f)
        self.assertRegex(f, r"Risk level: (Verified|Medium|High)<br>")
        m = ID_LINK.search(f)
        self.assertIsNotNone(m, f)
        self.assertEqual(m.group(2), vid)
        sc.assert_link_host(m.group(1))
        self.assertEqual(browse(m.group(1))[0], 200)
        self.assertIn("Password reset completed", f)
        self.assertIn("Ticket closed automatically", f)
        self.assertEqual(rec["state"], "7")
        self.assertEqual(rec["active"], "false")
        self.assertEqual(rec["close_code"], "Solution provided")
        self.assertIn(vid, rec["close_notes"])
        self.assertIn("Abel Tuter", rec["close_notes"])
        self.assertIn(t["number"], rec["close_notes"])
        self.assertIn("Ticket closed automatically", resolved)
        for n in sc.notes(t):
            self.assertNotIn("abel.private@example.org", n)
        sc.assert_one_note_per_event(t, ["link", "sent", "progress", "outcome", "resolved"])
        # One PATCH per event, field and note together; nothing else written.
        patches = [w for w in sc.writes(t) if w["method"] == "PATCH"]
        self.assertEqual(len(patches), 5)
        self.assertTrue(all(FIELD in w["fields"] and "work_notes" in w["fields"]
                            for w in patches))

        # Measures: requests the ticket cost beyond the idle polls.  The
        # daemon's ServiceNow requests are all but the POST that created
        # the ticket; a poll cycle starts with one list GET whatever
        # happens, and each page that came back with rows costs one more
        # (the continuation, sys_id> in its query).
        daemon = [r for r in snow_log if r[1].startswith("/api/") and r[0] != "POST"]
        idle = [r for r in daemon if r[0] == "GET" and r[1].startswith("/api/now/table/incident?")
                and "sys_id%3E" not in r[1]]
        snow_per_ticket = len(daemon) - len(idle)
        self.assertEqual(snow_stats.get("PATCH /api/now/table/incident/{sys_id}", 0), 5)
        imp_per_ticket = sum(n for k, n in imp_stats.items()
                             if k.split(" ")[1].startswith("/v1/") and k != FEED)
        self.assertEqual(imp_stats.get(CREATE, 0), 1)
        pages = len([r for r in daemon if r[0] == "GET" and "sys_id%3E" in r[1]])
        print("\ne2e: time-to-field=%dms snow-requests-per-ticket=%d "
              "imperai-requests-per-ticket=%d" % (time_to_field, snow_per_ticket,
                                                   imp_per_ticket), file=sys.stderr)
        print("e2e: snow: %d PATCH, %d GET of the ticket, %d extra poll pages "
              "(idle poll GETs not counted: %d); imper.ai: %s" % (
                  len([r for r in daemon if r[0] == "PATCH"]),
                  len([r for r in daemon if r[0] == "GET" and "/incident/" in r[1]]),
                  pages, len(idle), ", ".join("%s=%d" % (k, n) for k, n in sorted(
                      imp_stats.items()) if k.split(" ")[1].startswith("/v1/"))),
              file=sys.stderr)



class TlsTest(unittest.TestCase):
    """The same ticket over HTTPS, as every customer runs it: both
    simulators serve TLS with a certificate of a CA made for the test,
    which the daemon trusts through ca_file."""

    def test_ticket_from_creation_to_closure_over_tls(self):
        sc = Scenario(self, tls=True).start()
        self.assertTrue(sc.snow.url.startswith("https://"))
        self.assertTrue(sc.imp.url.startswith("https://"))
        t = sc.create(category="password_reset", short_description="Forgot my password")
        result = sc.verify_through_pages(t)
        self.assertIn("Verification passed", result)
        sc.wait_tag(t, "outcome")
        sc.reset_password(result)
        sc.wait_tag(t, "resolved")
        sc.settle()
        sc.assert_one_note_per_event(t, ["link", "sent", "progress", "outcome", "resolved"])
        self.assertEqual(sc.record(t)["state"], "7")
        for sim in (sc.snow, sc.imp):
            st = sim.control.ok("GET", "/sim/stats")
            self.assertGreater(st.get("tls_full", 0), 0, st)
            self.assertEqual(st.get("tls_failed", 0), 0, st)
        print("\ne2e tls: servicenow %s; imper.ai %s" % tuple(
            {k: v for k, v in sim.control.ok("GET", "/sim/stats").items()
             if k.startswith("tls_") or k == "connections"} for sim in (sc.snow, sc.imp)),
            file=sys.stderr)


class SharedStack(unittest.TestCase):
    """One stack (shipped flows, incident and sc_req_item) for the class:
    each test works on its own tickets."""

    @classmethod
    def setUpClass(cls):
        cls.sc = Scenario(None, tables=("incident", "sc_req_item"))
        try:
            cls.sc.start()
        except Exception:
            cls.sc.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.sc.close()

    def setUp(self):
        self.sc.test = self

    def wait(self, pred, what):
        return self.sc.wait(pred, what)


class OutcomeTest(SharedStack):
    """Outcomes other than a clean pass."""

    def assert_on_fail(self, t, note):
        rec = self.sc.record(t)
        groups = self.sc.snow.control.ok("GET", "/sim/dump")["tables"]["sys_user_group"]
        security = [g["sys_id"] for g in groups if g["name"] == "Service Desk Security"][0]
        self.assertEqual(rec["assignment_group"], security)
        self.assertEqual(rec["priority"], "2")
        self.assertIn(RECOMMEND_REJECT, note)
        self.assertIn("Reassigned to Service Desk Security", note)
        self.assertIn("Recommendation: " + RECOMMEND_REJECT, rec[FIELD])
        return rec

    def test_failed_verification_applies_on_fail_and_never_resolves(self):
        sc = self.sc
        t = sc.create(category="password_reset")
        result = sc.verify_through_pages(t, answers=("fail", "x", "y"))
        self.assertIn("Verification failed", result)
        note = sc.wait_tag(t, "on_fail")
        self.assertIn("Verification Outcome: Failed", note)
        self.assertIn("Not resolved automatically: the verification failed", note)
        rec = self.assert_on_fail(t, note)
        self.assertIn("Verification Outcome: Failed", rec[FIELD])
        self.assertIn("Risk level: High", rec[FIELD])
        self.assertEqual(rec["state"], "1")
        sc.settle()
        sc.assert_one_note_per_event(t, ["link", "sent", "progress", "on_fail"])

    def test_high_risk_pass_applies_on_fail_and_never_resolves(self):
        sc = self.sc
        t = sc.create(category="password_reset")
        _, url = sc.wait_link(t)
        sc.send(t, url)
        sc.wait_tag(t, "sent")
        vid = sc.requests_for(t)[-1]["id"]
        sc.act(vid, "complete", outcome="passed", risk_score=9)
        note = sc.wait_tag(t, "on_fail")
        self.assertIn("Verification Outcome: Passed", note)
        self.assertIn("Risk level: High", note)
        self.assert_on_fail(t, note)
        # The reset done anyway must not close a high-risk ticket.
        sc.act(vid, "action", status="completed")
        note = sc.wait_tag(t, "action")
        self.assertIn("Not resolved automatically: the risk level is High", note)
        sc.settle()
        rec = sc.record(t)
        self.assertEqual(rec["state"], "1")
        self.assertEqual(rec["close_code"], "")
        self.assertEqual(rec["priority"], "2")
        sc.assert_one_note_per_event(t, ["link", "sent", "on_fail", "action"])

    def test_timed_out_starts_attempt_2_which_passes_and_closes(self):
        sc = self.sc
        t = sc.create(category="password_reset")
        _, url1 = sc.wait_link(t)
        sc.send(t, url1)
        sc.wait_tag(t, "sent")
        vid1 = sc.requests_for(t)[-1]["id"]
        sc.act(vid1, "expire")
        field, url2 = sc.wait_link(t, generation=2)
        self.assertNotEqual(url2, url1)
        self.assertIn("Attempt 2 of 3 - attempt 1: Timed out", field)
        self.assertLess(field.index("Send Verification link"), field.index("Attempt 2 of 3"))
        note = sc.wait_tag(t, "link", count=2)
        self.assertIn("Attempt 2 of 3 - attempt 1: Timed out", note)
        r1, r2 = sc.requests_for(t)
        self.assertEqual((r1["id"], r1["status"]), (vid1, "timed_out"))
        self.assertEqual(r2["status"], "pending")
        self.assertNotEqual(r2["id"], vid1)
        sc.send(t, url2)
        sc.wait_tag(t, "sent", count=2)
        link = sc.mailbox_link(t)
        sc.open_verification(link)
        sc.wait_tag(t, "progress")
        result = sc.answer(link)
        self.assertIn("Verification passed", result)
        sc.wait_tag(t, "outcome")
        sc.reset_password(result)
        sc.wait_tag(t, "resolved")
        rec = sc.record(t)
        self.assertEqual(rec["state"], "7")
        self.assertIn(r2["id"], rec["close_notes"])
        self.assertIn("Verification Outcome: Passed", rec[FIELD])
        sc.settle()
        self.assertEqual(len(sc.requests_for(t)), 2)
        sc.assert_one_note_per_event(t, ["link", "sent", "link", "sent", "progress", "outcome",
                                         "resolved"])

    def test_not_enough_questions_three_times_leaves_no_automatic_attempt(self):
        sc = self.sc
        t = sc.create(category="password_reset")
        for attempt in (1, 2, 3):
            _, url = sc.wait_link(t, generation=attempt)
            sc.send(t, url)
            sc.wait_tag(t, "sent", count=attempt)
            link = sc.mailbox_link(t)
            sc.open_verification(link)
            sc.wait_tag(t, "progress", count=attempt)
            result = sc.answer(link, ("blue", "", ""))
            self.assertIn("not enough questions", result.lower())
            if attempt < 3:
                note = sc.wait_tag(t, "link", count=attempt + 1)
                self.assertIn("Attempt %d of 3 - attempt %d: Not enough questions"
                              % (attempt + 1, attempt), note)
        note = sc.wait_tag(t, "outcome")
        self.assertIn("Verification Outcome: Not enough questions", note)
        self.assertIn("No automatic attempt is left (3 of 3 used)", note)
        rec = sc.record(t)
        self.assertIn("Verification Outcome: Not enough questions", rec[FIELD])
        self.assertIn("No automatic attempt is left (3 of 3 used)", rec[FIELD])
        self.assertNotIn("Send Verification link", rec[FIELD])
        self.assertEqual(rec["state"], "1")
        sc.settle()
        self.assertEqual([r["status"] for r in sc.requests_for(t)],
                         ["not_enough_questions"] * 3)
        sc.assert_one_note_per_event(t, ["link", "sent", "progress"] * 3 + ["outcome"])

    def test_send_again_to_a_corrected_address_replaces_the_link(self):
        sc = self.sc
        t = sc.create(category="password_reset")
        _, url = sc.wait_link(t)
        sc.send(t, url, recipient="abel.typo@example.org")
        sc.wait_tag(t, "sent")
        link1 = sc.mailbox_link(t, to="abel.typo@example.org")
        field = sc.wait(lambda: SEND_AGAIN.search(sc.field(t) or ""), "the send-again link")
        again = field.group(1).replace("&amp;", "&")
        self.assertNotEqual(again, url)
        sc.send(t, again, recipient="abel.private@example.org", agent="Ivy Agent")
        note = sc.wait_tag(t, "sent", count=2)
        self.assertIn("Verification link sent by Ivy Agent via email to a***e@e***.org", note)
        rec = sc.record(t)
        self.assertIn("Recipient: a***e@e***.org", rec[FIELD])
        self.assertIn("imper.ai - Send the link again", rec[FIELD])
        # links stay single-use: the first no longer works, the second does
        status, html = browse(link1)
        self.assertEqual(status, 410, html)
        link2 = sc.mailbox_link(t)
        self.assertNotEqual(link1, link2)
        sc.open_verification(link2)
        sc.wait_tag(t, "progress")
        self.assertIn("Verification passed", sc.answer(link2))
        sc.wait_tag(t, "outcome")
        self.assertNotIn("Send the link again", sc.record(t)[FIELD])
        self.assertEqual(len(sc.requests_for(t)), 1)

    def test_failed_starts_no_new_request_at_imperai(self):
        sc = self.sc
        t = sc.create(category="password_reset")
        sc.verify_through_pages(t, answers=("fail", "x", "y"))
        note = sc.wait_tag(t, "on_fail")
        self.assertIn("Reassigned to Service Desk Security", note)
        sc.settle()
        self.assertEqual([r["status"] for r in sc.requests_for(t)], ["failed"])
        self.assertNotIn("Attempt", sc.record(t)[FIELD])

    def test_a_link_expired_before_it_was_sent_counts_as_timed_out(self):
        sc = self.sc
        t = sc.create(category="password_reset")
        _, url1 = sc.wait_link(t)
        sc.act(sc.requests_for(t)[-1]["id"], "expire")
        field, url2 = sc.wait_link(t, generation=2)
        self.assertNotEqual(url1, url2)
        self.assertIn("Attempt 2 of 3 - attempt 1: Timed out", field)
        status, html = browse(url1)
        self.assertNotEqual((status, 'id="sent"' in html), (200, True))


class TicketChangeTest(SharedStack):
    """What agents do to a ticket while its verification runs."""

    def test_requester_change_after_a_pass_starts_over_and_the_pass_never_resolves(self):
        sc = self.sc
        t = sc.create(category="password_reset")
        result = sc.verify_through_pages(t)
        sc.wait_tag(t, "outcome")
        old = sc.requests_for(t)[-1]
        self.assertEqual(old["status"], "passed")
        cancels = sc.imp_stats().get(CANCEL, 0)
        sc.snow.patch("incident", t["sys_id"], caller_id="beth.anglin")
        note = sc.wait_tag(t, "requester_changed")
        field, url = sc.wait_link(t, generation=2)
        self.assertIn("Re-verification required", field)
        self.assertIn("the requester changed", field)
        reqs = sc.requests_for(t)
        self.assertEqual(len(reqs), 2, reqs)
        new = reqs[-1]
        self.assertNotEqual(new["id"], old["id"])
        self.assertEqual(new["requester"]["user_name"], "beth.anglin")
        self.assertEqual(new["status"], "pending")
        self.assertTrue(new["idem"]["key"].endswith("/%s/2" % t["sys_id"]), new["idem"])
        sc.assert_link_host(url)
        self.assertIn(new["tokens"]["send"], url)
        # The old request was asked to cancel (a final one stays final).
        self.wait(lambda: sc.imp_stats().get(CANCEL, 0) > cancels, "a cancel of the old request")
        self.assertEqual(sc.verification(old["id"])["status"], "passed")
        # Abel finishes the reset on the old request: the ticket stays open.
        sc.reset_password(result)
        self.wait(lambda: sc.verification(old["id"])["action"]["status"] == "completed",
                  "the old request's reset")
        sc.settle()
        rec = sc.record(t)
        self.assertEqual(rec["state"], "1")
        self.assertEqual(rec["close_code"], "")
        self.assertIn("Re-verification required", rec[FIELD])
        sc.assert_one_note_per_event(t, ["link", "sent", "progress", "outcome",
                                         "requester_changed", "link"])
        self.assertIn("Verification ID: %s" % new["id"], sc.notes(t)[-1])
        # Beth's own verification and reset do close it, in her name.
        sc.send(t, url, recipient="beth.private@example.org")
        link = sc.mailbox_link(t, to="beth.private@example.org")
        sc.reset_password(sc.answer(link))
        sc.wait_tag(t, "resolved")
        rec = sc.record(t)
        self.assertEqual(rec["state"], "7")
        self.assertIn(new["id"], rec["close_notes"])
        self.assertIn("Beth Anglin", rec["close_notes"])
        self.assertNotIn(old["id"], rec[FIELD])

    def test_changes_unseen_when_the_reset_completes_do_not_resolve(self):
        """While the requester finishes the reset, an agent changes one
        ticket's caller and closes another himself; imper.ai's news reaches
        the daemon first (its ServiceNow reads are slow).  The pass is not
        the new caller's, and the agent's resolution is his."""
        sc = self.sc
        moved, closed = sc.create(category="password_reset"), sc.create(category="password_reset")
        results = [sc.verify_through_pages(t) for t in (moved, closed)]
        for t in (moved, closed):
            sc.wait_tag(t, "outcome")
        old = sc.requests_for(moved)[-1]
        sc.stop_daemon()
        sc.snow.patch("incident", moved["sys_id"], caller_id="beth.anglin")
        sc.snow.patch("incident", closed["sys_id"], state="7", close_code="Workaround provided",
                      close_notes="Reset by the agent on the phone")
        for r in results:
            sc.reset_password(r)
        sc.snow.control.ok("POST", "/sim/faults", {"latency_ms": 1500, "methods": ["GET"],
                                                   "path_prefix": "/api/now/table/"})
        self.addCleanup(sc.snow.control.ok, "POST", "/sim/faults", {})
        sc.stack.start_daemon()
        sc.wait_tag(moved, "requester_changed")
        sc.wait_tag(closed, "action")
        sc.snow.control.ok("POST", "/sim/faults", {})
        sc.wait_link(moved, generation=2)
        sc.settle()
        rec = sc.record(moved)
        self.assertEqual((rec["state"], rec["close_code"], rec["close_notes"]), ("1", "", ""))
        self.assertNotIn("closed automatically", rec[FIELD])
        reqs = sc.requests_for(moved)
        self.assertEqual([v["id"] for v in reqs][0], old["id"])
        self.assertEqual(reqs[-1]["requester"]["user_name"], "beth.anglin")
        # The reset is recorded, with why it did not resolve, then Beth's turn.
        sc.assert_one_note_per_event(moved, ["link", "sent", "progress", "outcome", "action",
                                             "requester_changed", "link"])
        for t in (moved, closed):
            note = sc.notes(t)[4]
            self.assertIn("Password reset completed", note)
            self.assertIn("the ticket changed in ServiceNow before the resolution was written",
                          note)
        rec = sc.record(closed)
        self.assertEqual((rec["state"], rec["close_code"], rec["close_notes"]),
                         ("7", "Workaround provided", "Reset by the agent on the phone"))
        self.assertNotIn("closed automatically", rec[FIELD])
        sc.assert_one_note_per_event(closed, ["link", "sent", "progress", "outcome", "action"])

    def test_requester_change_before_the_outcome_cancels_at_imperai(self):
        sc = self.sc
        t = sc.create(category="password_reset")
        _, url = sc.wait_link(t)
        sc.send(t, url)
        sc.wait_tag(t, "sent")
        old = sc.requests_for(t)[-1]
        sc.snow.patch("incident", t["sys_id"], caller_id="beth.anglin")
        sc.wait_link(t, generation=2)
        self.wait(lambda: sc.verification(old["id"])["status"] == "canceled",
                  "the old request to be canceled at imper.ai")
        self.assertEqual(len(sc.requests_for(t)), 2)
        sc.settle()
        sc.assert_one_note_per_event(t, ["link", "sent", "requester_changed", "link"])

    def test_agent_cancels_or_resolves_mid_way_and_the_request_is_canceled(self):
        sc = self.sc
        canceled = sc.create(category="password_reset")
        resolved = sc.create(category="password_reset")
        sc.wait_link(canceled)
        _, url = sc.wait_link(resolved)
        sc.send(resolved, url)
        sc.wait_tag(resolved, "sent")
        sc.snow.patch("incident", canceled["sys_id"], state="8")
        sc.snow.patch("incident", resolved["sys_id"], state="6", close_code="Solution provided",
                      close_notes="Done by phone")
        for t in (canceled, resolved):
            note = sc.wait_tag(t, "canceled")
            vid = sc.requests_for(t)[-1]["id"]
            self.wait(lambda: sc.verification(vid)["status"] == "canceled",
                      "%s canceled at imper.ai" % vid)
            self.assertIn("Verification canceled", note)
            rec = sc.record(t)
            self.assertIn("Verification Outcome: Canceled", rec[FIELD])
            self.assertIn("closed before the verification completed", rec[FIELD])
        sc.settle()
        self.assertEqual(sc.record(canceled)["state"], "8")
        self.assertEqual(sc.record(resolved)["state"], "6")
        self.assertEqual(sc.record(resolved)["close_notes"], "Done by phone")
        sc.assert_one_note_per_event(canceled, ["link", "canceled"])
        sc.assert_one_note_per_event(resolved, ["link", "sent", "canceled"])

    def test_agent_resolves_after_the_pass_and_the_reset_changes_nothing_of_it(self):
        sc = self.sc
        t = sc.create(category="password_reset")
        result = sc.verify_through_pages(t)
        sc.wait_tag(t, "outcome")
        sc.snow.patch("incident", t["sys_id"], state="6", close_code="Workaround provided",
                      close_notes="Reset by the agent")
        sc.settle()
        sc.reset_password(result)
        self.wait(lambda: sc.requests_for(t)[-1]["action"]["status"] == "completed",
                  "the reset at imper.ai")
        sc.settle()
        rec = sc.record(t)
        self.assertEqual((rec["state"], rec["close_code"], rec["close_notes"]),
                         ("6", "Workaround provided", "Reset by the agent"))
        self.assertEqual(sc.requests_for(t)[-1]["status"], "passed")
        self.assertNotIn("closed automatically", rec[FIELD])
        self.assertNotIn("resolved", [x[0] for x in sc.tags(t)])

    def test_changes_while_the_create_is_in_flight(self):
        """Category out, requester changed, ticket canceled, each while
        imper.ai holds the answer to the create: the late answer is
        canceled, and each ticket says what happened once."""
        sc = self.sc
        sc.imp.control.ok("POST", "/sim/faults", {"slow_rate": 1.0, "slow_ms": 3000,
                                                  "methods": ["POST"], "path_prefix": "/v1/"})
        self.addCleanup(sc.imp.control.ok, "POST", "/sim/faults", {})
        out, moved, ended = (sc.create(category="password_reset") for _ in range(3))
        for t in (out, moved, ended):
            self.wait(lambda: sc.requests_for(t), "the create of %s to land" % t["number"])
        sc.snow.patch("incident", out["sys_id"], category="inquiry")
        sc.snow.patch("incident", moved["sys_id"], caller_id="beth.anglin")
        sc.snow.patch("incident", ended["sys_id"], state="8")
        sc.wait_tag(out, "untracked")
        sc.wait_tag(ended, "canceled")
        sc.wait_link(moved, generation=2)
        sc.imp.control.ok("POST", "/sim/faults", {})
        first = {t["number"]: sc.requests_for(t)[0]["id"] for t in (out, moved, ended)}
        for t in (out, moved, ended):
            self.wait(lambda: sc.verification(first[t["number"]])["status"] == "canceled",
                      "the late request of %s to be canceled" % t["number"])
        sc.settle()
        sc.assert_one_note_per_event(out, ["untracked"])
        sc.assert_one_note_per_event(ended, ["canceled"])
        sc.assert_one_note_per_event(moved, ["requester_changed", "link"])
        self.assertEqual([v["status"] for v in sc.requests_for(moved)], ["canceled", "pending"])
        self.assertEqual(sc.requests_for(moved)[1]["requester"]["user_name"], "beth.anglin")

    def test_category_out_says_so_once_and_back_in_starts_a_new_request(self):
        sc = self.sc
        t = sc.create(category="password_reset")
        sc.wait_link(t)
        first = sc.requests_for(t)[-1]
        sc.snow.patch("incident", t["sys_id"], category="inquiry")
        note = sc.wait_tag(t, "untracked")
        self.assertIn("No verification needed", note)
        self.assertIn("No verification needed", sc.record(t)[FIELD])
        self.wait(lambda: sc.verification(first["id"])["status"] == "canceled",
                  "the request to be canceled when the category left the flows")
        before = len(sc.writes(t))
        sc.snow.patch("incident", t["sys_id"], short_description="Actually a question")
        sc.settle()
        sc.snow.patch("incident", t["sys_id"], category="software", priority="3")
        sc.settle()
        after = sc.writes(t)
        self.assertEqual(len(after), before + 2, "the daemon wrote to an untracked ticket")
        self.assertEqual(len(sc.notes(t)), 2)
        sc.snow.patch("incident", t["sys_id"], category="password_reset")
        field, url = sc.wait_link(t, generation=2)
        reqs = sc.requests_for(t)
        self.assertEqual(len(reqs), 2, reqs)
        self.assertEqual(reqs[-1]["status"], "pending")
        self.assertTrue(reqs[-1]["idem"]["key"].endswith("/2"), reqs[-1]["idem"])
        self.assertIn(reqs[-1]["tokens"]["send"], url)
        sc.settle()
        sc.assert_one_note_per_event(t, ["link", "untracked", "link"])
        self.assertEqual(sc.tags(t)[-1][1].split(".")[0], "2")



class FlowsTest(SharedStack):
    """The shipped flows side by side, on incidents and requested items."""

    def test_password_reset_and_account_access_side_by_side(self):
        sc = self.sc
        reset = sc.create(category="password_reset")
        access = sc.create(category="account_access", caller="beth.anglin",
                           short_description="Cannot log in to the portal")
        _, url_r = sc.wait_link(reset)
        _, url_a = sc.wait_link(access)
        sc.send(reset, url_r)
        sc.send(access, url_a, recipient="beth.private@example.org", agent="Ivy Agent")
        links = (sc.mailbox_link(reset), sc.mailbox_link(access, to="beth.private@example.org"))
        for t, link in zip((reset, access), links):
            sc.wait_tag(t, "sent")
            sc.open_verification(link)
        for t, link in zip((reset, access), links):
            sc.wait_tag(t, "progress")
        result_r, result_a = sc.answer(links[0]), sc.answer(links[1])
        self.assertNotIn("reset-link", result_a)
        sc.wait_tag(reset, "outcome")
        note = sc.wait_tag(access, "outcome")
        self.assertIn("Verification Outcome: Passed", note)
        # a flow that never resolves says nothing about not resolving
        self.assertNotIn("Not resolved automatically", note)
        sc.reset_password(result_r)
        sc.wait_tag(reset, "resolved")
        sc.settle()
        (vr,), (va,) = sc.requests_for(reset), sc.requests_for(access)
        self.assertEqual(vr["requested_action"], "password_reset")
        self.assertEqual(va["requested_action"], "none")
        self.assertEqual(va["requester"]["user_name"], "beth.anglin")
        self.assertEqual(sc.record(reset)["state"], "7")
        rec = sc.record(access)
        self.assertEqual(rec["state"], "1")
        self.assertEqual(rec["assignment_group"], "")
        self.assertIn("Verification Outcome: Passed", rec[FIELD])
        sc.assert_one_note_per_event(reset, ["link", "sent", "progress", "outcome", "resolved"])
        sc.assert_one_note_per_event(access, ["link", "sent", "progress", "outcome"])

    def test_requested_item_is_verified_and_resolved(self):
        sc = self.sc
        t = sc.create("sc_req_item", caller="beth.anglin",
                      short_description="Application password reset for SAP")
        other = sc.create("sc_req_item", caller="beth.anglin", short_description="New laptop")
        result = sc.verify_through_pages(t)
        sc.wait_tag(t, "outcome")
        sc.reset_password(result)
        note = sc.wait_tag(t, "resolved")
        sc.settle()
        (v,) = sc.requests_for(t)
        self.assertEqual(v["ticket"]["table"], "sc_req_item")
        self.assertEqual(v["requester"]["user_name"], "beth.anglin")
        self.assertEqual(v["requested_action"], "password_reset")
        rec = sc.record(t)
        self.assertEqual(rec["state"], "3")
        self.assertEqual(rec["active"], "false")
        self.assertIn(v["id"], rec["close_notes"])
        self.assertIn("Verification Outcome: Passed", rec[FIELD])
        self.assertIn("Ticket closed automatically", note)
        sc.assert_one_note_per_event(t, ["link", "sent", "progress", "outcome", "resolved"])
        # The item that matches no flow was only read by the polls.
        self.assertEqual([w["method"] for w in sc.writes(other)], ["POST"])
        self.assertEqual(sc.requests_for(other), [])


FIRST_MATCH_FLOWS = """flows:
  - name: vpn-unlock            # narrow, before the broad one: it wins
    match:
      table: incident
      categories: [account_access]
      query: "short_descriptionLIKEVPN"
    action: account_unlock
  - name: account-access
    match:
      table: incident
      categories: [account_access]
    action: none
  - name: password-reset        # broad, before the narrow one: it wins
    match:
      table: incident
      categories: [password_reset]
    action: password_reset
  - name: vip-password-reset
    match:
      table: incident
      categories: [password_reset]
      query: "priority=1"
    action: vip_password_reset
"""


class FirstMatchTest(unittest.TestCase):
    def test_the_first_flow_in_the_file_that_matches_wins(self):
        sc = Scenario(self, flows=FIRST_MATCH_FLOWS).start()
        vpn = sc.create(category="account_access", short_description="VPN account locked")
        plain = sc.create(category="account_access", short_description="Cannot log in")
        vip = sc.create(category="password_reset", impact="1", urgency="1", priority="1")
        for t in (vpn, plain, vip):
            sc.wait_link(t)
        self.assertEqual(sc.record(vip)["priority"], "1")
        actions = {t["number"]: [v["requested_action"] for v in sc.requests_for(t)]
                   for t in (vpn, plain, vip)}
        self.assertEqual(actions, {vpn["number"]: ["account_unlock"],
                                   plain["number"]: ["none"],
                                   vip["number"]: ["password_reset"]})



class UntouchedTest(unittest.TestCase):
    def test_a_ticket_needing_no_verification_is_only_ever_polled(self):
        sc = Scenario(self, verbose=True).start()
        quiet = sc.create(category="inquiry", short_description="How do I print?")
        control = sc.create(category="password_reset")
        # The poll that found the later ticket found the quiet one too.
        sc.wait_link(control)
        sc.settle()
        self.assertEqual([w["method"] for w in sc.writes(quiet)], ["POST"])
        self.assertEqual(sc.requests_for(quiet), [])
        self.assertEqual(sc.notes(quiet), [])
        # Polls name it only as a paging position (sys_id>...); nothing addressed it.
        touched = [r for r in parse_verbose_log(sc.snow.log_path)
                   if r[1].split("?")[0].endswith("/" + quiet["sys_id"])]
        self.assertEqual(touched, [])
        stats = sc.snow_stats()
        self.assertEqual(stats.get("PATCH /api/now/table/incident/{sys_id}", 0),
                         len([w for w in sc.writes(control) if w["method"] == "PATCH"]))
        self.assertEqual(stats.get("GET /api/now/table/incident/{sys_id}", 0), 0)
        self.assertEqual(sc.imp_stats().get(CREATE, 0), 1)


class ExpiryTest(unittest.TestCase):
    def test_timed_out_when_the_imperai_clock_passes_expires_at(self):
        sc = Scenario(self).start()
        t = sc.create(category="password_reset")
        _, url = sc.wait_link(t)
        sc.send(t, url)
        sc.wait_tag(t, "sent")
        (v,) = sc.requests_for(t)
        now = sc.imp.control.ok("GET", "/sim/clock")["now"]
        sc.imp.control.ok("POST", "/sim/clock", {"advance": v["expires_at"] - now + 1})
        self.assertEqual(sc.verification(v["id"])["status"], "timed_out")
        field, _ = sc.wait_link(t, generation=2)
        self.assertIn("Attempt 2 of 3 - attempt 1: Timed out", field)
        sc.settle()
        self.assertEqual(sc.record(t)["state"], "1")
        sc.assert_one_note_per_event(t, ["link", "sent", "link"])


class RestartTest(unittest.TestCase):
    """The happy path with the daemon stopped at every step: nothing is
    repeated (notes counted per tag, one request at imper.ai), nothing is
    lost (each step still reaches the ticket)."""

    def final_checks(self, sc, t):
        sc.settle()
        rec = sc.record(t)
        self.assertEqual(rec["state"], "7")
        self.assertEqual(rec["close_code"], "Solution provided")
        (v,) = sc.requests_for(t)
        self.assertEqual(v["status"], "passed")
        self.assertIn(v["id"], rec["close_notes"])
        sc.assert_one_note_per_event(t, ["link", "sent", "progress", "outcome", "resolved"])
        self.assertEqual(len([w for w in sc.writes(t) if w["method"] == "PATCH"]), 5)

    def test_sigterm_at_every_step_with_the_step_done_while_stopped(self):
        sc = Scenario(self).start()
        state = {}

        def create():
            state["t"] = sc.create(category="password_reset")

        def send():
            _, url = sc.wait_link(state["t"])
            sc.send(state["t"], url)

        def open_page():
            state["link"] = sc.mailbox_link(state["t"])
            sc.open_verification(state["link"])

        def answer():
            state["result"] = sc.answer(state["link"])

        def reset():
            sc.reset_password(state["result"])

        for step, tag in ((create, "link"), (send, "sent"), (open_page, "progress"),
                          (answer, "outcome"), (reset, "resolved")):
            sc.stop_daemon()
            step()
            sc.stack.start_daemon()
            sc.wait_tag(state["t"], tag)
        sc.stop_daemon()
        sc.stack.start_daemon()
        self.final_checks(sc, state["t"])

    def test_sigkill_at_every_step_after_the_write_landed_unanswered(self):
        sc = Scenario(self).start()
        state = {}

        def crash_while_answer_held(sim, prefix, act, landed, what):
            """The daemon's write lands but its answer is held back (a slow
            fault); the daemon is killed waiting for it, then started."""
            sim.control.ok("POST", "/sim/faults", {"slow_rate": 1.0, "slow_ms": 8000,
                                                   "methods": ["POST", "PATCH"],
                                                   "path_prefix": prefix})
            act()
            sc.wait(landed, what)
            self.assertEqual(sc.stack.daemon.kill(), -9)
            sim.control.ok("POST", "/sim/faults", {})
            sc.stack.start_daemon()

        def has_tag(tag):
            return lambda: tag in [x[0] for x in sc.tags(state["t"])]

        crash_while_answer_held(
            sc.imp, "/v1/", lambda: state.update(t=sc.create(category="password_reset")),
            lambda: sc.requests_for(state["t"]), "the create to land at imper.ai")
        t = state["t"]
        _, url = sc.wait_link(t)
        crash_while_answer_held(sc.snow, "/api/now/table/incident/", lambda: sc.send(t, url),
                                has_tag("sent"), "the sent note to land")
        link = sc.mailbox_link(t)
        for act, tag in ((lambda: sc.open_verification(link), "progress"),
                         (lambda: state.update(result=sc.answer(link)), "outcome"),
                         (lambda: sc.reset_password(state["result"]), "resolved")):
            sc.settle(1)
            crash_while_answer_held(sc.snow, "/api/now/table/incident/", act, has_tag(tag),
                                    "the %s note to land" % tag)
        self.final_checks(sc, t)
        # Every restart read the ticket back instead of writing again.
        self.assertGreaterEqual(sc.snow_stats().get("GET /api/now/table/incident/{sys_id}", 0), 4)

if __name__ == "__main__":
    unittest.main(verbosity=2)
