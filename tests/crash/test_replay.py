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

    def test_read_back_refused_with_403_is_parked_not_retried(self):
        """The PATCH lands but its answer is a 502; the read-back that must
        tell whether it landed is refused (403).  Asking again will not
        help: the entry is parked at once (one GET, no resend), and after
        `imperai-snowctl retry` the read-back finds the write: one note."""
        self.st.snow.scripted("PATCH", self.path, [
            {"status": 502, "ctype": "text/html", "body": "<html>Bad Gateway</html>",
             "apply": True}])
        self.st.snow.scripted("GET", self.path, [
            {"status": 403, "ctype": "application/json", "body": FORBIDDEN}]
            + [{"pass": True}] * 20)
        self.st.start_daemon()
        self.st.wait(lambda: self.outbox()[1] == 1, 30, "the write to be parked")
        gets = [r for r in self.st.snow.scripted_state()["seen"] if r["method"] == "GET"]
        self.assertEqual(len(gets), 1, gets)
        self.assertEqual(len(self.our_patches()), 1)
        self.st.snow.scripted_clear()
        r = self.st.ctl("retry")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.st.wait(lambda: self.outbox() == (0, 0), 30, "an empty outbox after retry")
        self.assertEqual(self.notes(), [("link", "1", "1")])
        self.assertEqual(len(self.our_patches()), 1)


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


if __name__ == "__main__":
    unittest.main()
