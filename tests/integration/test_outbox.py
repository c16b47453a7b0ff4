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


if __name__ == "__main__":
    unittest.main()
