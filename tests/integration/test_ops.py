#!/usr/bin/env python3
"""Operations: the metrics file (Prometheus textfile), first-time setup of
ServiceNow (imperai-snowctl setup) and recovery of the state directory
(imperai-snowctl rebuild), against both simulators.  Every wait is for a
condition (harness.wait_until), never a sleep."""
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (EX_CONFIG, EX_OK, EX_UNAVAILABLE, SNOW_USER, TOP_SRC, Stack,  # noqa: E402
                     wait_until, write_secret)
import promtext  # noqa: E402

METRICS_CONF = """
metrics: { file = "%s"; interval = 1; };
"""


class PromTextParserTest(unittest.TestCase):
    """The parser the metrics tests rely on refuses what the format forbids."""

    GOOD = ("# HELP imperai_snow_x_total X.\n# TYPE imperai_snow_x_total counter\n"
            "imperai_snow_x_total{a=\"1\"} 2\nimperai_snow_x_total{a=\"2\"} 3\n")

    def test_accepts_good_text(self):
        fams = promtext.parse(self.GOOD)
        self.assertEqual(promtext.value(fams, "imperai_snow_x_total", a="2"), 3)

    def test_refuses_what_the_format_forbids(self):
        bad = {
            "duplicate series": self.GOOD + "imperai_snow_x_total{a=\"1\"} 4\n",
            "no trailing newline": self.GOOD[:-1],
            "sample before TYPE": "imperai_snow_y 1\n" + self.GOOD,
            "HELP after samples": self.GOOD + "# HELP imperai_snow_x_total again\n",
            "bad escape": self.GOOD.replace("a=\"1\"", "a=\"\\q\""),
            "unquoted label": self.GOOD.replace("a=\"1\"", "a=1"),
            "counter without _total": self.GOOD.replace("x_total", "x"),
            "no prefix": self.GOOD.replace("imperai_snow_", "other_"),
            "not contiguous": self.GOOD + "# HELP imperai_snow_g G.\n# TYPE imperai_snow_g "
                                          "gauge\nimperai_snow_g 1\nimperai_snow_x_total{a=\"3\"} 1\n",
            "empty line": self.GOOD + "\n",
        }
        for what, text in bad.items():
            with self.subTest(what):
                self.assertRaises(ValueError, promtext.parse, text)


def man_metrics(page):
    with open(os.path.join(TOP_SRC, "man", page)) as f:
        return set(re.findall(r"imperai_snow_[a-z_]+", f.read()))


class MetricsTest(unittest.TestCase):
    """The daemon writes the metrics file every interval; its numbers follow
    the scenario; it parses strictly; every metric is documented."""

    @classmethod
    def setUpClass(cls):
        cls.s = Stack()
        cls.prom = os.path.join(cls.s.dir, "textfile", "imperai-snow.prom")
        os.makedirs(os.path.dirname(cls.prom))
        cls.s.extra_conf = METRICS_CONF % cls.prom
        try:
            cls.s.start()
            t = cls.s.snow.create_ticket(category="password_reset")
            cls.s.snow.create_ticket(category="software")
            v = cls.s.wait_verification(t["number"])
            cls.s.imperai.act(v["id"], "send", recipient="abel.private@example.org",
                              agent="Ivy Agent")
            cls.s.imperai.act(v["id"], "complete", outcome="passed", risk_score=1)
            cls.s.wait_status(t["number"], "passed")
        except Exception:
            cls.s.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.s.close()

    def read(self):
        with open(self.prom) as f:
            return promtext.parse(f.read())

    def wait_metric(self, name, want, **labels):
        return self.s.wait(lambda: promtext.value(self.read(), name, **labels) == want,
                           what="%s%r == %s in the metrics file" % (name, labels, want))

    def test_numbers_follow_the_scenario(self):
        self.wait_metric("imperai_snow_outcomes_total", 1, result="passed", risk="verified")
        # the outcome is counted when decided, its PATCH when it lands
        fams = self.s.wait(lambda: (promtext.value(self.read(), "imperai_snow_writes_total",
                                                   effect="patch") or 0) >= 2 and self.read(),
                           what="the outcome's PATCH in the metrics file")
        self.assertEqual(promtext.value(fams, "imperai_snow_outcomes_total", result="failed",
                                        risk="high"), 0)
        self.assertEqual(promtext.value(fams, "imperai_snow_fields_injected_total"), 1)
        self.assertEqual(promtext.value(fams, "imperai_snow_tickets_tracked_total"), 1)
        self.assertEqual(promtext.value(fams, "imperai_snow_tickets", state="passed"), 1)
        self.assertEqual(promtext.value(fams, "imperai_snow_tickets", state="link_ready"), 0)
        self.assertEqual(promtext.value(fams, "imperai_snow_writes_total", effect="create"), 1)
        self.assertEqual(promtext.value(fams, "imperai_snow_auto_resolved_total"), 0)
        self.assertGreaterEqual(promtext.value(fams, "imperai_snow_tickets_seen_total",
                                               table="incident"), 2)
        self.assertGreater(promtext.value(fams, "imperai_snow_http_requests_total",
                                          service="servicenow", code="2xx"), 0)
        self.assertGreater(promtext.value(fams, "imperai_snow_http_requests_total",
                                          service="imperai", code="2xx"), 0)
        self.assertEqual(promtext.value(fams, "imperai_snow_outbox_entries"), 0)
        self.assertEqual(promtext.value(fams, "imperai_snow_outbox_oldest_age_seconds"), 0)
        for svc in ("servicenow", "imperai"):
            self.assertGreater(promtext.value(
                fams, "imperai_snow_last_poll_success_timestamp_seconds", service=svc), 0)
            self.assertLess(promtext.value(fams, "imperai_snow_last_poll_age_seconds",
                                           service=svc), 60)

    def test_file_is_world_readable_and_alone_in_its_directory(self):
        self.wait_metric("imperai_snow_outcomes_total", 1, result="passed", risk="verified")
        self.assertEqual(stat.S_IMODE(os.stat(self.prom).st_mode), 0o644)
        self.assertEqual(os.listdir(os.path.dirname(self.prom)), ["imperai-snow.prom"])

    def test_every_metric_is_documented(self):
        names = set(self.read())
        self.assertGreaterEqual(len(names), 15)
        for page in ("imperai-snowd.8", "imperai-snowd.conf.5"):
            with self.subTest(page):
                self.assertEqual(names - man_metrics(page), set())
                self.assertEqual(man_metrics(page) - names, set(), "documented, not written")

    def test_promtool_accepts_the_file_when_installed(self):
        promtool = shutil.which("promtool")
        if promtool is None:
            self.skipTest("promtool not installed (Debian package prometheus)")
        with open(self.prom, "rb") as f:
            r = subprocess.run([promtool, "check", "metrics"], input=f.read(),
                               capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_tickets_by_state_survive_a_restart(self):
        self.wait_metric("imperai_snow_tickets", 1, state="passed")
        started = promtext.value(self.read(), "imperai_snow_start_time_seconds")
        self.s.stop_daemon()
        os.unlink(self.prom)
        self.s.start_daemon()
        fams = self.s.wait(lambda: os.path.exists(self.prom) and self.read(),
                           what="the restarted daemon to write the metrics file")
        self.assertGreaterEqual(promtext.value(fams, "imperai_snow_start_time_seconds"), started)
        self.assertEqual(promtext.value(fams, "imperai_snow_tickets", state="passed"), 1)
        self.assertEqual(promtext.value(fams, "imperai_snow_outcomes_total", result="passed",
                                        risk="verified"), 0, "counters restart from zero")



class SetupTest(unittest.TestCase):
    """imperai-snowctl setup against a simulator started without the field."""

    ADMIN_PASSWORD = "admin"

    def setUp(self):
        self.s = Stack(self, no_verification_field=True)
        self.s.start_sims().write_config()
        self.pwfile = os.path.join(self.s.dir, "admin-password")
        write_secret(self.pwfile, self.ADMIN_PASSWORD)

    def setup(self, *args):
        return self.s.ctl("setup", *args)

    def dictionary(self, table="incident"):
        return self.s.snow.admin.ok("GET", "/api/now/table/sys_dictionary?sysparm_query=name=%s"
                                    "^element=u_imperai_verification" % table)["result"]

    def test_reports_the_missing_field_and_what_is_in_place(self):
        r = self.setup()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("missing:   field incident.u_imperai_verification does not exist", r.stdout)
        self.assertIn("ok:        user %s has role itil" % SNOW_USER, r.stdout)
        self.assertIn("time zone GMT (UTC)", r.stdout)
        self.assertIn("setup: 1 missing, 0 unchecked", r.stdout)

    def test_a_table_that_has_the_field_is_ok(self):
        r = self.setup("--table", "sc_req_item")
        self.assertEqual(r.returncode, EX_OK, r.stdout + r.stderr)
        self.assertIn("ok:        field sc_req_item.u_imperai_verification exists and is an "
                      "HTML field", r.stdout)
        self.assertIn("setup OK: nothing missing", r.stdout)

    def test_create_field_needs_an_admin_credential(self):
        r = self.setup("--create-field")
        self.assertEqual(r.returncode, 64)
        self.assertIn("--admin-user and --admin-password-file", r.stderr)
        os.chmod(self.pwfile, 0o644)
        r = self.setup("--create-field", "--admin-user", "admin", "--admin-password-file",
                       self.pwfile)
        self.assertEqual(r.returncode, 64, r.stdout + r.stderr)
        self.assertIn("chmod", r.stderr)
        self.assertEqual(self.dictionary(), [])

    def test_dry_run_prints_the_request_and_creates_nothing(self):
        r = self.setup("--create-field", "--dry-run")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("would:     create field incident.u_imperai_verification", r.stdout)
        self.assertIn('"internal_type":"html"', r.stdout)
        self.assertIn('"max_length":65000', r.stdout)
        self.assertEqual(self.dictionary(), [])

    def test_create_field_then_the_daemon_writes_it(self):
        r = self.setup("--create-field", "--admin-user", "admin", "--admin-password-file",
                       self.pwfile)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, EX_OK, out)
        self.assertIn("created:   field incident.u_imperai_verification (HTML", r.stdout)
        self.assertIn("Form Layout", r.stdout)
        self.assertIn("Access Control", r.stdout)
        rows = self.dictionary()
        self.assertEqual([(x["internal_type"], x["column_label"], x["max_length"]) for x in rows],
                         [("html", "imper.ai Verification", "65000")])
        self.assertNotIn("admin:" + self.ADMIN_PASSWORD, out)
        r = self.setup()
        self.assertEqual(r.returncode, EX_OK, r.stdout + r.stderr)
        self.s.start_daemon()
        t = self.s.snow.create_ticket(category="password_reset")
        self.s.wait(lambda: "Send Verification link" in self.s.snow.ticket(
            "incident", t["sys_id"]).get("u_imperai_verification", ""),
            what="the link in the created field")

    def test_a_user_without_roles_in_another_time_zone(self):
        with open(self.s.conf) as f:
            conf = f.read().replace('user = "%s"' % SNOW_USER, 'user = "readonly"')
        with open(self.s.conf, "w") as f:
            f.write(conf)
        write_secret(os.path.join(self.s.creds, "servicenow-password"), "readonly")
        r = self.setup("--table", "sc_req_item")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("missing:   user readonly has no role that writes sc_req_item (itil)",
                      r.stdout)
        self.assertIn("missing:   user readonly has time zone America/Los_Angeles", r.stdout)
        self.assertIn("set the user's Time zone to GMT", r.stdout)

    def test_unreachable_instance_and_bad_settings(self):
        self.s.snow.stop()
        r = self.setup()
        self.assertEqual(r.returncode, EX_UNAVAILABLE, r.stdout + r.stderr)
        self.assertIn("cannot log in", r.stderr)
        r = self.s.ctl("-c", os.path.join(self.s.dir, "nonexistent.conf"), "setup", config=False)
        self.assertEqual(r.returncode, EX_CONFIG, r.stdout + r.stderr)


REBUILD_FLOWS = """flows:
  - name: password-reset
    match: { table: incident, categories: [password_reset] }
    action: password_reset
    automated: true
    close_code: "Solution provided"
    close_notes: "Password reset after imper.ai verification {verification_id}."
    max_age: 1h
    retry: { on: [], max: 0 }
  - name: account-access
    match: { table: incident, categories: [account_access] }
    action: none
    automated: false
    on_fail:
      work_note: "High risk detected - Reject this request"
    retry: { on: [], max: 0 }
"""
NOTE_TAG = re.compile(r"^\[imper\.ai (\S+) (\d+)\.(\d+)\]")
LABELS = {"passed": "Passed", "failed": "Failed", "timed_out": "Timed out",
          "not_enough_questions": "Not enough questions", "canceled": "Canceled"}


class RebuildTest(unittest.TestCase):
    """The state directory is lost mid-way through the scenario; rebuild,
    restart, finish: no note twice, every outcome in its ticket, resolved
    exactly the automated ones."""

    def setUp(self):
        self.s = Stack(self, flows=REBUILD_FLOWS)
        self.s.start()
        self.t = {}

    # -- helpers -----------------------------------------------------------------

    def ticket(self, name, category):
        self.t[name] = self.s.snow.create_ticket(category=category)
        return self.t[name]

    def vid(self, name):
        v = self.s.imperai.verification_for(self.t[name]["number"])
        return v["id"] if v else None

    def field(self, name):
        return self.s.snow.ticket("incident", self.t[name]["sys_id"]).get(
            "u_imperai_verification", "")

    def wait_field(self, name, text):
        return self.s.wait(lambda: text in self.field(name),
                           what="%s's field to show %r" % (name, text))

    def act(self, name, do, **kw):
        self.s.imperai.act(self.vid(name), do, **kw)

    def send(self, name):
        self.act(name, "send", recipient="%s.private@example.org" % name, agent="Ivy Agent")

    def notes(self, name):
        rows = self.s.snow.control.ok("GET", "/sim/journal?table=incident&sys_id=%s"
                                      % self.t[name]["sys_id"])
        return [r["value"] for r in rows if r["element"] == "work_notes"]

    def state(self, name):
        return self.s.snow.ticket("incident", self.t[name]["sys_id"])["state"]

    # -- the scenario --------------------------------------------------------------

    def before_the_loss(self):
        for name, cat in (("resolved", "password_reset"), ("passed_pending_action",
                          "password_reset"), ("passed_manual", "account_access"),
                          ("link_only", "password_reset"), ("sent", "account_access"),
                          ("outcome_while_down", "password_reset"),
                          ("link_never_landed", "password_reset")):
            self.ticket(name, cat)
        # The link PATCH of one ticket keeps failing: its field stays empty.
        self.s.snow.control.ok("POST", "/sim/faults", {
            "error_rate": 1.0, "error_codes": [503], "methods": ["PATCH"],
            "path_prefix": "/api/now/table/incident/" + self.t["link_never_landed"]["sys_id"]})
        for name in ("resolved", "passed_pending_action", "passed_manual", "link_only", "sent",
                     "outcome_while_down"):
            self.wait_field(name, "Send Verification link")
        self.s.wait(lambda: self.vid("link_never_landed"), what="the create of the failing one")
        for name in ("resolved", "passed_pending_action", "passed_manual", "sent",
                     "outcome_while_down"):
            self.send(name)
        for name in ("resolved", "passed_pending_action", "passed_manual"):
            self.act(name, "complete", outcome="passed", risk_score=1)
        self.act("resolved", "action", status="completed", automated=True)
        self.wait_field("resolved", "resolved automatically")
        self.wait_field("passed_pending_action", "Password reset pending")
        self.wait_field("passed_manual", "Verification Outcome: Passed")
        for name in ("sent", "outcome_while_down"):
            self.wait_field(name, "Waiting for the requester")
        self.s.wait(lambda: self.s.snow.control.ok("GET", "/sim/stats")["faults"].get("error"),
                    what="a refused link PATCH")

    def lose_the_state(self):
        self.s.daemon.proc.kill()
        self.s.daemon.proc.wait()
        self.s.stop_daemon()
        shutil.rmtree(self.s.state)
        self.s.snow.control.ok("POST", "/sim/faults", {})
        self.act("outcome_while_down", "complete", outcome="passed", risk_score=2)
        self.ticket("created_while_down", "password_reset")

    def after_the_rebuild(self):
        self.act("passed_pending_action", "action", status="completed", automated=True)
        self.wait_field("link_only", "Send Verification link")
        self.send("link_only")
        self.wait_field("link_only", "Waiting for the requester")
        self.act("link_only", "complete", outcome="passed", risk_score=0)
        self.wait_field("link_only", "Password reset pending")
        self.act("link_only", "action", status="completed", automated=True)
        self.act("sent", "complete", outcome="failed", risk_score=9)
        for name in ("link_never_landed", "created_while_down"):
            self.wait_field(name, "Send Verification link")
        for name in ("passed_pending_action", "link_only"):
            self.wait_field(name, "resolved automatically")
        self.wait_field("sent", "Verification Outcome: Failed")
        self.wait_field("outcome_while_down", "Verification Outcome: Passed")

    def check_invariants(self):
        for name in self.t:
            seen, revs = set(), []
            for note in self.notes(name):
                m = NOTE_TAG.match(note)
                self.assertIsNotNone(m, "%s: a note without a tag: %r" % (name, note))
                key = (m.group(1), int(m.group(2)), int(m.group(3)))
                self.assertNotIn(key, seen, "%s: note %s written twice" % (name, key))
                seen.add(key)
                revs.append(int(m.group(3)))
            self.assertEqual(revs, list(range(1, len(revs) + 1)),
                             "%s: revisions not consecutive: %s" % (name, revs))
        for v in self.s.imperai.verifications():
            name = [n for n in self.t if self.t[n]["number"] == v["ticket"]["number"]][0]
            if v["status"] in LABELS:
                self.assertIn("Verification Outcome: " + LABELS[v["status"]], self.field(name),
                              "%s: outcome %s not in the field" % (name, v["status"]))
        per_ticket = [v["ticket"]["number"] for v in self.s.imperai.verifications()]
        self.assertEqual(sorted(per_ticket), sorted(t["number"] for t in self.t.values()),
                         "one request per ticket: a replayed create must not make another")
        resolved = {n for n in self.t if self.state(n) in ("6", "7")}
        self.assertEqual(resolved, {"resolved", "passed_pending_action", "link_only"})

    def test_lost_state_is_rebuilt_and_the_scenario_completes(self):
        self.before_the_loss()
        r = self.s.ctl("rebuild")
        self.assertEqual(r.returncode, 75, "a running daemon holds the lock: " + r.stderr)
        self.assertIn("stop imperai-snowd first", r.stderr)
        self.lose_the_state()
        r = self.s.ctl("rebuild")
        self.assertEqual(r.returncode, EX_OK, r.stdout + r.stderr)
        self.assertIn("rebuilt 8 tickets", r.stdout)
        first = r.stdout
        r = self.s.ctl("rebuild")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("--force", r.stderr)
        r = self.s.ctl("rebuild", "--force")
        self.assertEqual((r.returncode, r.stdout), (EX_OK, first), r.stderr)
        self.assertEqual(sorted(os.listdir(self.s.state)), ["data.mdb", "lock"])
        r = self.s.ctl("audit", "verify")
        self.assertEqual((r.returncode, r.stdout), (EX_OK, "audit: 1 entry, chain intact\n"))
        shown = json.loads(self.s.ctl("show", "--json", self.t["passed_manual"]["number"]).stdout)
        self.assertEqual((shown["state"], shown["verification"]["id"]),
                         ("passed", self.vid("passed_manual")))
        shown = json.loads(self.s.ctl("show", "--json", self.t["link_only"]["number"]).stdout)
        self.assertEqual((shown["state"], shown["verification"]["id"]),
                         ("link_ready", self.vid("link_only")))
        self.s.start_daemon()
        self.after_the_rebuild()
        self.check_invariants()


if __name__ == "__main__":
    unittest.main()
