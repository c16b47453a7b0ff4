#!/usr/bin/env python3
"""The outbox under load: writes started in the same transaction that
stores them, many in flight, answers lost after the write landed, and the
daemon killed mid-burst.  Whatever happens, every ticket ends with its
field, exactly one work note per write and exactly one imper.ai request
(ARCHITECTURE.md section 6)."""
import os
import signal
import sys
import unittest
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack  # noqa: E402

FIELD = "u_imperai_verification"
PATCH_KEY = "PATCH /api/now/table/incident/{sys_id}"


class OutboxTest(unittest.TestCase):
    def setUp(self):
        self.stack = Stack(self, log_level="info", snow_extra="  concurrency = 4;\n",
                           imperai_extra="  concurrency = 4;\n")
        self.stack.start()

    def create(self, n):
        return self.stack.snow.control.ok("POST", "/sim/tickets", {
            "table": "incident", "count": n, "caller": "abel.tuter",
            "fields": {"category": "password_reset",
                       "short_description": "Please reset my password"}})["tickets"]

    def fields_written(self, made):
        ids = {t["sys_id"] for t in made}
        dump = self.stack.snow.control.ok("GET", "/sim/dump")
        return {r["sys_id"] for r in dump["tables"]["incident"]
                if r["sys_id"] in ids and r.get(FIELD)}

    def wait_fields(self, made, timeout=120):
        self.stack.wait(lambda: len(self.fields_written(made)) == len(made), timeout,
                        "the field in all %d tickets" % len(made))

    def assert_exactly_once(self, made):
        ids = {t["sys_id"] for t in made}
        dump = self.stack.snow.control.ok("GET", "/sim/dump")
        notes = Counter(j["element_id"] for j in dump["journal"]
                        if j["element"] == "work_notes" and j["element_id"] in ids)
        self.assertEqual(set(notes), ids, "a ticket without its work note")
        self.assertEqual({n for n in notes.values()}, {1},
                         "work notes written twice: %s"
                         % [k for k, v in notes.items() if v > 1][:5])
        numbers = {t["number"] for t in made}
        reqs = Counter(v["ticket"]["number"] for v in self.stack.imperai.verifications()
                       if v["ticket"]["number"] in numbers)
        self.assertEqual(set(reqs), numbers)
        self.assertEqual(set(reqs.values()), {1}, "a ticket with two imper.ai requests")

    def test_answers_lost_after_the_write_landed_are_never_written_twice(self):
        self.stack.snow.control.ok("POST", "/sim/faults", {
            "latency_ms": 5, "apply_then_drop_rate": 0.3, "reset_rate": 0.1, "seed": 7,
            "methods": ["PATCH"], "path_prefix": "/api/"})
        self.stack.imperai.control.ok("POST", "/sim/faults", {
            "latency_ms": 5, "apply_then_drop_rate": 0.3, "seed": 7, "path_prefix": "/v1/"})
        made = self.create(40)
        self.wait_fields(made)
        self.wait_fields(made)
        self.assert_exactly_once(made)

    def test_a_kill_mid_burst_loses_nothing_and_repeats_nothing(self):
        for sim in (self.stack.snow, self.stack.imperai):
            sim.control.ok("POST", "/sim/faults", {"latency_ms": 30})
        made = self.create(150)
        self.stack.wait(lambda: self.stack.snow.control.ok("GET", "/sim/stats")["requests"]
                        .get(PATCH_KEY, 0) >= 20, 60, "the first PATCHes")
        self.stack.daemon.proc.send_signal(signal.SIGKILL)
        self.stack.daemon.proc.wait()
        self.stack.daemon.stop()
        self.stack.start_daemon()
        self.wait_fields(made)
        # nothing left to replay, nothing replayed twice
        self.stack.wait(lambda: self.stack.ctl_json("status", "--json")["outbox"]["pending"] == 0,
                        60, "an empty outbox")
        self.assert_exactly_once(made)


class KeptAliveTest(unittest.TestCase):
    """Over TLS, as in production: a PATCH goes out on a kept-alive
    connection; when that connection dies after ServiceNow applied the
    PATCH and before the answer, the daemon does not send it again
    blindly: it reads the ticket back, finds the write there, and leaves
    exactly one work note."""

    def test_a_write_lost_on_a_kept_alive_connection_is_read_back_not_repeated(self):
        # one connection to ServiceNow: the PATCH goes on the polls' one
        stack = Stack(self, log_level="info", tls=True, snow_extra="  concurrency = 1;\n")
        stack.start_sims()
        stack.snow.control.ok("POST", "/sim/faults", {
            "apply_then_drop_rate": 1.0, "methods": ["PATCH"], "path_prefix": "/api/"})
        stack.write_config().start_daemon()
        t = stack.snow.create_ticket(category="password_reset")
        stack.wait(lambda: stack.snow.control.ok("GET", "/sim/stats")["faults"]
                   .get("apply_then_drop", 0) >= 1, 30, "the PATCH applied and its answer lost")
        stack.wait(lambda: [x for x in stack.daemon.lines_since(0)
                            if "write had landed before the answer was lost" in x], 30,
                   "the read-back finding the write")
        stack.wait(lambda: stack.ctl_json("status", "--json")["outbox"]["pending"] == 0, 30,
                   "an empty outbox")
        # only libcurl's refused re-send on a reused connection says so
        lost = [x for x in stack.daemon.lines_since(0) if "writes failing" in x]
        self.assertTrue(lost and "may have been applied" in lost[0], lost)
        patches = [w for w in stack.snow.writes("incident", t["sys_id"]) if w["method"] == "PATCH"]
        self.assertEqual(len(patches), 1, patches)
        self.assertIn(FIELD, patches[0]["fields"])
        notes = [j for j in stack.snow.journal("incident", t["sys_id"])
                 if j["element"] == "work_notes"]
        self.assertEqual(len(notes), 1, notes)
        self.assertEqual(stack.snow.control.ok("GET", "/sim/stats")["requests"][PATCH_KEY], 1)


class MergeTest(unittest.TestCase):
    def setUp(self):
        # the default flow: not automated, so the action is an update, not a resolve
        self.stack = Stack(self, log_level="info")
        self.stack.start()

    def decided(self, state, n):
        self.stack.wait(lambda: self.stack.ctl_json("status", "--json")["tickets"]["by_state"]
                        .get(state, 0) >= n, 60, "%d tickets decided %s" % (n, state))

    def patches(self, sids):
        out = {}
        for w in self.stack.snow.control.ok("GET", "/sim/writes?table=incident"):
            if w["method"] == "PATCH" and w["sys_id"] in sids:
                out.setdefault(w["sys_id"], []).append(w)
        return out

    def test_updates_queued_behind_a_slow_write_go_out_as_one(self):
        stack = self.stack
        made = stack.snow.control.ok("POST", "/sim/tickets", {
            "table": "incident", "count": 3, "caller": "abel.tuter",
            "fields": {"category": "password_reset"}})["tickets"]
        sids = {t["sys_id"] for t in made}
        stack.wait(lambda: len(self.patches(sids)) == 3, 60, "the links in the tickets")
        ids = [stack.wait_verification(t["number"])["id"] for t in made]
        # The link-sent write is slow: the outcome and the action are
        # decided while it is in flight, and wait behind it.  (A resolve
        # would go alone: it is read back first.)
        stack.snow.control.ok("POST", "/sim/faults", {"latency_ms": 6000, "methods": ["PATCH"]})
        for vid in ids:
            stack.imperai.act(vid, "send", recipient="abel@example.org", agent="Ivy")
        self.decided("link_sent", 3)
        for vid in ids:
            stack.imperai.act(vid, "complete", outcome="passed", risk_score=1)
        self.decided("passed", 3)
        for vid in ids:
            stack.imperai.act(vid, "action", status="completed", automated=True)
        self.decided("action_done", 3)
        queued_together = all(len(w) == 1 for w in self.patches(sids).values())
        stack.snow.control.ok("POST", "/sim/faults", {})
        stack.wait(lambda: stack.ctl_json("status", "--json")["outbox"]["pending"] == 0, 60,
                   "an empty outbox")
        dump = stack.snow.control.ok("GET", "/sim/dump")
        for sid, writes in self.patches(sids).items():
            rec = [r for r in dump["tables"]["incident"] if r["sys_id"] == sid][0]
            self.assertIn("Passed", rec["u_imperai_verification"])
            notes = [j["value"] for j in dump["journal"]
                     if j["element_id"] == sid and j["element"] == "work_notes"]
            self.assertEqual(len(notes), len(writes), "one journal entry per write")
            text = "\n".join(notes)
            for part in set(p for n in notes for p in n.split("\n\n") if p.strip()):
                self.assertEqual(text.count(part), 1, "a note written twice: %r" % part)
            if queued_together:
                # inject, link sent, then outcome and action merged
                self.assertEqual(len(writes), 3, [w["fields"].keys() for w in writes])
                self.assertIn("\n\n", writes[-1]["fields"]["work_notes"])


if __name__ == "__main__":
    unittest.main()
