#!/usr/bin/env python3
"""The request budget holds across restarts (issue #7): the daemon,
SIGKILLed while it spends servicenow.request_budget and started again,
never sends more within the hour than the budget allows, as counted by
the ServiceNow simulator itself (/sim/stats)."""
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack  # noqa: E402

BUDGET = 30


class BudgetTest(unittest.TestCase):
    def setUp(self):
        # One record per page: every ticket costs a request, back to back,
        # so the budget goes in a burst.
        self.stack = Stack(self, log_level="info", snow_http={"request_budget": BUDGET},
                           snow_extra="  page_size = 1;\n")
        self.stack.start_sims()
        self.stack.snow.control.ok("POST", "/sim/tickets", {
            "table": "incident", "count": 3 * BUDGET, "caller": "abel.tuter",
            "fields": {"category": "network", "short_description": "VPN is slow"}})
        self.stack.write_config()

    def sent(self):
        return self.stack.snow.control.ok("GET", "/sim/stats")["total"]

    def wait_budget_spent(self):
        """Until the running daemon says it holds requests back for the budget."""
        pid = self.stack.daemon.proc.pid

        def waiting():
            st = self.stack.ctl_json("status", "--json")
            d = st.get("daemon", st)
            return d if d.get("pid") == pid and d.get("snow_budget_waits", 0) > 0 else None
        return self.stack.wait(waiting, 60, "daemon %d to wait for the request budget" % pid)

    def test_killed_and_restarted_daemon_stays_within_the_hours_budget(self):
        s = self.stack
        # Slow answers (about 5 requests a second) so that the kill lands
        # while budget is left; the restarted daemon gets fast ones.
        s.snow.control.ok("POST", "/sim/faults", {"latency_ms": 200, "path_prefix": "/api/"})
        s.start_daemon()
        s.wait(lambda: self.sent() >= BUDGET // 3, 30, "the daemon to spend a third of its budget")
        s.daemon.kill()
        at_kill = self.sent()
        self.assertLessEqual(at_kill, BUDGET)
        s.snow.control.ok("POST", "/sim/faults", {})

        # Started again mid-hour: it spends only what is left, then waits.
        s.start_daemon()
        d = self.wait_budget_spent()
        after = self.sent()
        self.assertLessEqual(after, BUDGET, "requests within the hour over two runs")
        self.assertGreater(after, at_kill, "the restarted daemon spent what was left")
        self.assertLessEqual(d["snow_budget_used"], BUDGET)

        # Killed once the budget is gone: the next run sends nothing at all.
        s.daemon.kill()
        s.start_daemon()
        d = self.wait_budget_spent()
        self.assertEqual(d["snow_budget_used"], BUDGET)
        self.assertEqual(self.sent(), after, "a request sent over the spent budget")

        # A clean stop keeps the use too.
        s.stop_daemon()
        s.start_daemon()
        self.wait_budget_spent()
        self.assertEqual(self.sent(), after, "a request sent over the spent budget")

    @unittest.skipUnless(shutil.which("mdb_load"), "needs mdb_load (lmdb-utils)")
    def test_unreadable_stored_use_is_warned_about_and_the_daemon_starts(self):
        s = self.stack
        s.start_daemon()
        self.wait_budget_spent()
        s.stop_daemon()
        subprocess.run(["mdb_load", "-T", "-s", "meta", s.state], check=True,
                       input="budget/servicenow\nnot a budget record\n", text=True)
        s.start_daemon()
        s.wait(lambda: any("stored request budget use unreadable" in line
                           for line in s.daemon.lines_since(0)), 20, "the warning")
        # counted from an empty hour: the daemon polls again
        before = self.sent()
        s.wait(lambda: self.sent() > before, 20, "the daemon to send again")


if __name__ == "__main__":
    unittest.main()
