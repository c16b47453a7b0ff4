#!/usr/bin/env python3
"""Deterministic forms of what the crash and fault campaigns look for:
a PATCH that landed while the daemon died before recording it, and a
read-back refused with a 4xx.  Every wait is for a condition in the
simulators or the store (imperai-snowctl status)."""
import json
import os
import re
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import SNOW_USER, Stack  # noqa: E402

NOTE_RE = re.compile(r"^\[imper\.ai (\S+) (\d+)\.(\d+)\]")
FORBIDDEN = json.dumps({"error": {"message": "User Not Authorized",
                                  "detail": "Failed API level ACL Validation"},
                        "status": "failure"})


class ReplayTest(unittest.TestCase):
    def setUp(self):
        self.st = Stack(self)
        self.st.start_sims().write_config()
        self.t = self.st.snow.create_ticket(category="password_reset")
        self.path = "/api/now/table/incident/" + self.t["sys_id"]

    def notes(self):
        rows = self.st.snow.control.ok("GET", "/sim/journal?table=incident&sys_id="
                                       + self.t["sys_id"])
        return [NOTE_RE.match(r["value"]).groups() for r in rows
                if r["element"] == "work_notes" and NOTE_RE.match(r["value"])]

    def our_patches(self):
        return [w for w in self.st.snow.control.ok(
            "GET", "/sim/writes?table=incident&sys_id=" + self.t["sys_id"])
            if w["method"] == "PATCH" and w.get("user") == SNOW_USER]

    def outbox(self):
        ob = self.st.ctl_json("status", "--json").get("outbox", {})
        return ob.get("pending", -1), ob.get("parked", 0)

    def test_patch_landed_before_a_crash_is_not_written_again(self):
        """The link PATCH lands, its answer is slow, the daemon is killed
        before it hears it: after the restart it reads the ticket back and
        does not write the note a second time."""
        self.st.snow.control.ok("POST", "/sim/faults", {
            "slow_rate": 1.0, "slow_ms": 20000, "methods": ["PATCH"]})
        self.st.start_daemon()
        self.st.wait(lambda: self.our_patches(), 30, "the link PATCH to land")
        self.st.daemon.kill()
        self.st.snow.control.ok("POST", "/sim/faults", {})
        self.st.start_daemon()
        self.st.wait(lambda: self.outbox() == (0, 0), 30, "an empty outbox")
        self.assertEqual(self.notes(), [("link", "1", "1")])
        self.assertEqual(len(self.our_patches()), 1)
        self.assertIn("write had landed before the answer was lost", self.st.daemon.log(400))

    def test_unanswered_patch_is_read_back_only_after_it_can_no_longer_land(self):
        """The link PATCH is queued at the instance (held, unprocessed)
        while the daemon times out on it.  Reading the ticket back at once
        would find no trace of it and send it again; the held request would
        then land too: two notes.  The daemon waits write_settle seconds
        from sending before it reads back.  Found by the full crash
        campaign (a PATCH sent just before a SIGKILL, processed by the
        simulator after the restarted daemon's read-back)."""
        reads = lambda: self.st.snow.control.ok("GET", "/sim/stats")["requests"].get(
            "GET /api/now/table/incident/{sys_id}", 0)
        self.st.write_settle = 10
        self.st.snow_http = {"timeout": 2, "max_retries": 1}
        self.st.write_config()
        self.st.snow.control.ok("POST", "/sim/hold", {"methods": ["PATCH"]})
        self.st.start_daemon()
        self.st.wait(lambda: "write failed: will retry" in self.st.daemon.log(400), 30,
                     "the link PATCH to time out")
        self.st.wait(lambda: "read back once it can no longer land" in self.st.daemon.log(400),
                     30, "the retry to wait for the write to settle")
        self.assertEqual(reads(), 0, "read back while the PATCH could still land")
        self.assertEqual(self.our_patches(), [])
        self.st.snow.control.ok("POST", "/sim/release")
        self.st.wait(lambda: self.our_patches(), 30, "the held PATCH to land")
        self.st.wait(lambda: self.outbox() == (0, 0), 60, "an empty outbox")
        self.assertEqual(self.notes(), [("link", "1", "1")])
        self.assertEqual(len(self.our_patches()), 1)
        self.assertEqual(reads(), 1)
        self.assertIn("write had landed before the answer was lost", self.st.daemon.log(400))

    def test_change_found_by_the_read_back_is_decided_not_taken_for_ours(self):
        """Our link PATCH lands (mod 1) and the poll sees that echo, but the
        daemon dies before the PATCH's answer.  While it is down an agent
        closes the ticket (mod 2).  On restart the read-back finds our
        revision in the field -- in a record that also carries the close.
        That close must be decided (cancel at imper.ai, field "Canceled"),
        not taken for our own write: the poll would then skip mod 2 as seen
        and the request would stay pending for ever.  Found by the fault
        campaign (apply-then-drop on a PATCH, agent close before the
        read-back)."""
        self.st.snow.control.ok("POST", "/sim/faults", {
            "slow_rate": 1.0, "slow_ms": 30000, "methods": ["PATCH"]})
        self.st.start_daemon()
        self.st.wait(lambda: self.our_patches(), 30, "the link PATCH to land")
        polls = lambda: self.st.daemon.log(100000).count("poll cycle done")
        seen = polls()
        self.st.wait(lambda: polls() >= seen + 2, 30, "two polls after the PATCH landed")
        self.st.daemon.kill()
        self.st.snow.control.ok("POST", "/sim/faults", {})
        self.st.snow.control.ok("POST", "/sim/update", {
            "sys_id": self.t["sys_id"], "user": "itil.agent",
            "fields": {"state": "7", "close_code": "Solution provided", "close_notes": "x"}})
        # The restarted daemon's polls fail until its read-back is done.
        self.st.snow.scripted("GET", "/api/now/table/incident", [
            {"status": 503, "ctype": "text/html", "body": "<html>down</html>"}] * 500)
        self.st.start_daemon()
        self.st.wait(lambda: "write had landed" in self.st.daemon.log(100000), 30,
                     "the read-back")
        self.st.snow.scripted_clear()
        vid = self.st.imperai.verification_for(self.t["number"])["id"]
        self.st.wait(lambda: [v for v in self.st.imperai.verifications()
                              if v["id"] == vid and v["status"] == "canceled"], 30,
                     "the request to be canceled")
        self.st.wait(lambda: self.outbox() == (0, 0), 30, "an empty outbox")
        self.assertEqual(self.notes(), [("link", "1", "1"), ("canceled", "1", "2")])

    def test_feed_naming_our_create_still_in_flight_is_no_security_event(self):
        """The category leaves the flows while imper.ai holds the create's
        answer; the feed then names that request before the answer is
        indexed.  It is our own request (the answer comes, is indexed and
        canceled), not one this daemon did not make."""
        self.st.imperai.control.ok("POST", "/sim/faults", {
            "slow_rate": 1.0, "slow_ms": 8000, "methods": ["POST"], "path_prefix": "/v1/"})
        self.st.imperai.scripted("GET", "/v1/verification-requests/changes", [
            {"status": 503, "ctype": "application/json", "body": "{}"}] * 500)
        self.st.start_daemon()
        self.st.wait(lambda: self.st.imperai.verification_for(self.t["number"]), 30,
                     "the create to land")
        self.st.snow.control.ok("POST", "/sim/update", {
            "sys_id": self.t["sys_id"], "user": "itil.agent", "fields": {"category": "inquiry"}})
        self.st.wait(lambda: "to=untracked" in self.st.daemon.log(100000), 30,
                     "the ticket to leave the flows")
        self.st.imperai.scripted_clear()  # the feed now names the request
        vid = self.st.imperai.verification_for(self.t["number"])["id"]
        self.st.wait(lambda: [v for v in self.st.imperai.verifications()
                              if v["id"] == vid and v["status"] == "canceled"], 30,
                     "the late request to be canceled")
        self.assertIn("feed ahead of the create answer", self.st.daemon.log(100000))
        self.assertNotIn("did not make", self.st.daemon.log(100000))

    def test_read_back_refused_with_403_is_retried_never_resent_blind(self):
        """The PATCH lands but its answer is a 502; the read-back that must
        tell whether it landed is refused (403, then a proxy's HTML 400).
        A read-back is a GET, safe to ask again (issue 14): it is retried
        with backoff, never parked at once and the PATCH never sent blind;
        once it is answered, it finds the write: one note, no operator."""
        self.st.snow.scripted("PATCH", self.path, [
            {"status": 502, "ctype": "text/html", "body": "<html>Bad Gateway</html>",
             "apply": True}])
        self.st.snow.scripted("GET", self.path, [
            {"status": 403, "ctype": "application/json", "body": FORBIDDEN},
            {"status": 400, "ctype": "text/html", "body": "<html>400 Bad Request</html>"}]
            + [{"pass": True}] * 20)
        self.st.start_daemon()
        self.st.wait(lambda: self.outbox() == (0, 0) and len(
            [r for r in self.st.snow.scripted_state()["seen"] if r["method"] == "GET"]) >= 3,
            30, "the write to be found by a later read-back")
        gets = [r for r in self.st.snow.scripted_state()["seen"] if r["method"] == "GET"]
        self.assertEqual(len(gets), 3, gets)
        self.assertEqual(len(self.our_patches()), 1)
        self.assertEqual(self.notes(), [("link", "1", "1")])


    def test_patch_refused_with_429_is_sent_again_without_a_read_back(self):
        """A 429 means ServiceNow did nothing: the next attempt sends the
        PATCH again at once (after Retry-After), without first reading the
        ticket back to see whether it landed."""
        self.st.snow.scripted("PATCH", self.path, [
            {"status": 429, "ctype": "application/json", "headers": [["Retry-After", "1"]],
             "body": json.dumps({"error": {"message": "Rate limit exceeded", "detail": "x"},
                                 "status": "failure"})}] + [{"pass": True}] * 5)
        self.st.snow.scripted("GET", self.path, [{"pass": True}] * 5)
        self.st.start_daemon()
        self.st.wait(lambda: self.outbox() == (0, 0) and self.our_patches(), 30,
                     "the link PATCH to land")
        seen = [r["method"] for r in self.st.snow.scripted_state()["seen"]]
        self.assertEqual(seen, ["PATCH", "PATCH"])
        self.assertEqual(self.notes(), [("link", "1", "1")])


class PollTest(unittest.TestCase):
    def test_change_behind_the_cursor_in_a_busy_second_is_seen(self):
        """Other tickets keep changing (every 100 ms, pages take 1.1 s), so
        every page brings something new.  A watched ticket whose sys_id
        sorts before theirs is changed late in a second the poller has
        already read: it sorts behind the cursor.  The poll cycle must not
        run on for ever with the cursor ahead of it: the next cycle comes
        back by the overlap and sees the change (a new requester: a new
        request at imper.ai).  Found by the full fault campaign: the cycle
        went on 35 s while writes held back by a rate limit flushed, and two
        agent edits were never seen."""
        import threading
        import time
        st = Stack(self)
        st.start_sims().write_config()
        made = lambda cat, n: st.snow.control.ok("POST", "/sim/tickets", {
            "count": n, "caller": "abel.tuter", "fields": {"category": cat}})["tickets"]
        watched = sorted(made("password_reset", 4), key=lambda t: t["sys_id"])[:2]
        busy = []
        while len(busy) < 3:  # other tickets, sorting after the watched ones
            busy += [t for t in made("inquiry", 4) if t["sys_id"] > watched[-1]["sys_id"]]
        st.start_daemon()
        for t in watched:
            st.wait(lambda: st.imperai.verification_for(t["number"]), 30, "a request")
        polls = lambda: st.daemon.log(100000).count("poll cycle done")
        seen = polls()
        st.wait(lambda: polls() >= seen + 2, 30, "two polls after the requests")
        st.snow.control.ok("POST", "/sim/faults", {
            "latency_ms": 1100, "methods": ["GET"], "path_prefix": "/api/now/table/incident"})
        stop = threading.Event()

        def writer():
            i = 0
            while not stop.is_set():
                i += 1
                st.snow.control.ok("POST", "/sim/update", {
                    "sys_id": busy[i % len(busy)]["sys_id"],
                    "fields": {"short_description": "busy %d" % i}})
                stop.wait(0.1)  # the pace of the other tickets' changes
        lists = lambda: st.snow.control.ok("GET", "/sim/stats")["requests"].get(
            "GET /api/now/table/incident", 0)
        th = threading.Thread(target=writer, daemon=True)
        before = lists()
        th.start()
        try:
            st.wait(lambda: lists() >= before + 4, 30, "the poller to page through the changes")
            for t in watched:
                # late in a second: the poller has read that second's changes
                st.wait(lambda: st.snow.control.ok("GET", "/sim/clock")["now"] % 1 > 0.8,
                        5, "late in a second", )
                st.snow.control.ok("POST", "/sim/update", {
                    "sys_id": t["sys_id"], "user": "itil.agent",
                    "fields": {"caller_id": "beth.anglin"}})
            time.sleep(4)  # the other tickets keep changing: not a synchronisation
        finally:
            stop.set()
            th.join(10)
        st.snow.control.ok("POST", "/sim/faults", {})
        for t in watched:
            st.wait(lambda: [v for v in st.imperai.verifications()
                             if v["ticket"]["number"] == t["number"] and
                             v["requester"]["user_name"] == "beth.anglin"], 30,
                    "a request for %s's new caller" % t["number"])


    def test_pages_emptied_by_row_acls_are_read_past(self):
        """ServiceNow applies sysparm_limit before row ACLs, so a page can
        come back empty while rows follow.  70 tickets the integration user
        may not read (the simulator's seed hides category=legal from it)
        fill three and a half pages of 20; a ticket changed after them
        must still be seen.  Before the fix the empty first page ended
        every cycle at the same place: the ticket was never verified."""
        st = Stack(self, snow_extra="  page_size = 20;\n")
        st.start_sims().write_config()
        st.start_daemon()
        polls = lambda: st.daemon.log(100000).count("poll cycle done")
        seen = polls()
        st.wait(lambda: polls() > seen, 30, "a first poll cycle")
        st.snow.control.ok("POST", "/sim/tickets", {
            "count": 70, "caller": "abel.tuter", "fields": {"category": "legal"}})
        st.snow.control.ok("POST", "/sim/clock", {"advance": 5})
        t = st.snow.create_ticket(category="password_reset")
        st.wait(lambda: st.imperai.verification_for(t["number"]), 30,
                "a request for the ticket behind the hidden rows")
        self.assertIn("poll page hidden by ACLs: reading on past it", st.daemon.log(100000))


class BudgetTest(unittest.TestCase):
    def test_the_request_budget_binds(self):
        """With servicenow.http.request_budget = 20 the daemon makes 20
        requests to ServiceNow, no more, and then waits (its status says
        so) -- it keeps running."""
        st = Stack(self, snow_http={"request_budget": 20})
        st.start()
        st.snow.control.ok("POST", "/sim/tickets", {  # not through the API: not counted
            "count": 1, "caller": "abel.tuter", "fields": {"category": "password_reset"}})
        st.wait(lambda: st.ctl_json("status", "--json").get("snow_budget_waits", 0) > 0,
                40, "the daemon to wait for its budget")
        self.assertLessEqual(st.snow.control.ok("GET", "/sim/stats")["total"], 20)
        self.assertTrue(st.daemon.running())
        self.assertEqual(st.ctl_json("status", "--json").get("snow_budget_used"), 20)


class CheckerTest(unittest.TestCase):
    """The campaigns' checks catch what they look for: an invariant broken
    on purpose, behind the daemon's back, fails the run."""

    def run_campaign(self, inject):
        import subprocess
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            fig = os.path.join(d, "fig.json")
            p = subprocess.run([sys.executable, os.path.join(HERE, "campaign.py"), "--tickets",
                                "3", "--kills", "0", "--inject", inject, "--figures", fig],
                               capture_output=True, text=True, timeout=300)
            with open(fig) as f:
                return p, json.load(f)

    def test_a_duplicate_note_fails_the_run(self):
        p, fig = self.run_campaign("duplicate")
        self.assertEqual(p.returncode, 1, p.stdout[-3000:])
        self.assertGreaterEqual(fig["duplicates"], 2)  # the link note and its tag
        self.assertIn("appears 2 times", p.stdout)

    def test_a_lost_outcome_fails_the_run(self):
        p, fig = self.run_campaign("loss")
        self.assertEqual(p.returncode, 1, p.stdout[-3000:])
        self.assertGreaterEqual(fig["losses"], 1)
        self.assertEqual(fig["duplicates"], 0)


if __name__ == "__main__":
    unittest.main()
