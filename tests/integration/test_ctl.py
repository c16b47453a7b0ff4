#!/usr/bin/env python3
"""Black-box tests of imperai-snowctl against a store filled by a real
imperai-snowd run against the ServiceNow and imper.ai simulators: the
columns and filters of list, JSON and CSV, show of each outcome, status
exit codes, check-config --probe failures, audit verify/export, requests,
secrets never shown, and list running while the daemon writes."""
import csv
import io
import json
import os
import pty
import re
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (AUDIT_TAMPER, CTL, EX_CONFIG, EX_UNAVAILABLE, EX_USAGE, IMPERAI_KEY,  # noqa: E402
                     IMPERAI_SIM, SNOW_PASSWORD, Stack)

COLUMNS = ["TICKET", "REQUESTER", "EMAIL", "RISK", "STATUS", "CATEGORY", "INITIATED BY", "TIME"]
JSON_FIELDS = {"ticket", "table", "sys_id", "requester", "email", "risk_level", "risk_score",
               "status", "category", "initiated_by", "time", "verification_id", "state"}
MINUTE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def need_simulators(test):
    if not os.path.exists(IMPERAI_SIM):
        test.skipTest("tests/sim/imperai_sim.py is not in this tree yet")


def parse_table(text):
    """Rows of the aligned table as dicts, cut at the header's column starts."""
    lines = text.rstrip("\n").split("\n")
    header = lines[0]
    starts = [header.index(c) for c in COLUMNS]
    rows = []
    for line in lines[1:]:
        cells = [line[s:(starts[i + 1] if i + 1 < len(starts) else None)].strip()
                 for i, s in enumerate(starts)]
        rows.append(dict(zip(COLUMNS, cells)))
    return header, rows


class UsageTest(unittest.TestCase):
    """What needs no daemon and no store."""

    def run_ctl(self, *args):
        env = dict(os.environ)
        env.pop("NO_COLOR", None)
        return subprocess.run([CTL] + list(args), capture_output=True, text=True, timeout=30,
                              env=env)

    def test_version_and_help(self):
        r = self.run_ctl("-V")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^imperai-snowctl \d+\.\d+")
        for args in (["-h"], ["help"], ["--help"]):
            r = self.run_ctl(*args)
            self.assertEqual(r.returncode, 0, args)
            for cmd in ("list", "show", "status", "check-config", "resync", "retry", "audit"):
                self.assertIn(cmd, r.stdout)

    def test_each_command_has_its_own_help(self):
        for cmd in ("list", "show", "status", "check-config", "resync", "retry"):
            r = self.run_ctl(cmd, "--help")
            self.assertEqual(r.returncode, 0, cmd + r.stderr)
            self.assertIn("usage: imperai-snowctl", r.stdout)
            self.assertIn(cmd, r.stdout)
        r = self.run_ctl("help", "list")
        self.assertIn("--status", r.stdout)

    def test_unknown_options_and_commands_exit_64_with_usage(self):
        for args in (["--bogus"], ["frobnicate"], ["list", "--bogus"], ["list", "extra"],
                     ["show"], ["status", "-x"], ["audit"], ["audit", "shred"],
                     ["retry", "notanumber"], ["list", "--status", "passd"],
                     ["list", "--since", "yesterday"], ["list", "--sort", "color"],
                     ["list", "--json", "--csv"], ["list", "--csv", "--json"], []):
            r = self.run_ctl(*args)
            self.assertEqual(r.returncode, EX_USAGE, "%s: %s" % (args, r.stderr))
            self.assertIn("usage", r.stderr + r.stdout, args)

    def test_a_missing_state_directory_is_an_error_not_a_crash(self):
        r = self.run_ctl("-S", "/nonexistent/imperai-snow-state", "list")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("/nonexistent/imperai-snow-state", r.stderr)
        self.assertIn("state.directory", r.stderr, "the key as the settings spell it")
        self.assertNotIn("state_dir", r.stderr)
        r = self.run_ctl("-c", "/nonexistent/imperai-snowd.conf", "status")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("/nonexistent/imperai-snowd.conf", r.stderr)


class CheckConfigTest(unittest.TestCase):
    """check-config: the daemon's own check, and --probe against the simulators."""

    def stack(self, **kw):
        need_simulators(self)
        return Stack(self, **kw).start_sims().write_config()

    def probe(self, stack):
        r = stack.ctl("check-config", "--probe")
        for secret in (SNOW_PASSWORD, IMPERAI_KEY, stack.snow_password, stack.imperai_key):
            self.assertNotIn(secret, r.stdout + r.stderr)
        return r

    def test_check_without_probe_matches_the_daemon(self):
        s = self.stack()
        r = s.ctl("check-config")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("configuration OK (secrets not read"), r.stdout)
        d = subprocess.run([harness.DAEMON, "-n", "-c", s.conf], capture_output=True,
                           text=True, env=s.env(), timeout=30)
        self.assertEqual(d.stdout.strip(), "configuration OK")
        with open(s.conf, "a") as f:
            f.write("\nbogus_key = 1;\n")
        r = s.ctl("check-config")
        self.assertEqual(r.returncode, EX_CONFIG)
        self.assertIn("bogus_key", r.stderr)
        self.assertIn("configuration has 1 error", r.stderr)

    def test_probe_passes_against_the_simulators(self):
        r = self.probe(self.stack())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("probe OK", r.stdout)
        self.assertIn("field incident.u_imperai_verification exists", r.stdout)

    def test_probe_names_a_missing_verification_field_and_the_fix(self):
        r = self.probe(self.stack(no_verification_field=True))
        self.assertEqual(r.returncode, EX_UNAVAILABLE, r.stdout + r.stderr)
        self.assertIn("servicenow: table incident has no field u_imperai_verification", r.stderr)
        self.assertIn("servicenow.tables[0].field", r.stderr)

    def test_probe_names_a_category_that_does_not_exist(self):
        r = self.probe(self.stack(categories=("password_reset", "pasword_reset")))
        self.assertEqual(r.returncode, EX_UNAVAILABLE, r.stdout + r.stderr)
        self.assertIn('category "pasword_reset" does not exist on table incident', r.stderr)
        self.assertIn("flow password-reset", r.stderr)
        self.assertNotIn('"password_reset" does not exist', r.stderr)

    def test_probe_names_a_wrong_password(self):
        r = self.probe(self.stack(snow_password="not-the-Passw0rd-42"))
        self.assertEqual(r.returncode, EX_UNAVAILABLE, r.stdout + r.stderr)
        self.assertRegex(r.stderr, r"servicenow: .*login.* as imperai\.integration")
        self.assertIn("password", r.stderr)
        self.assertEqual(len([l for l in r.stderr.splitlines() if l.startswith("servicenow:")]),
                         1, "one line for the login, not one per table: " + r.stderr)

    def test_probe_names_a_wrong_api_key(self):
        r = self.probe(self.stack(imperai_key="wrong-key-9f8e7d6c5b"))
        self.assertEqual(r.returncode, EX_UNAVAILABLE, r.stdout + r.stderr)
        self.assertIn("imper.ai:", r.stderr)
        self.assertIn("imperai.api_key", r.stderr)
        self.assertNotIn("servicenow:", r.stderr)

    def test_probe_without_the_secrets_is_a_configuration_error(self):
        s = self.stack()
        os.unlink(os.path.join(s.creds, "imperai-api-key"))
        r = s.ctl("check-config", "--probe")
        self.assertEqual(r.returncode, EX_CONFIG, r.stdout + r.stderr)
        self.assertEqual(s.ctl("check-config").returncode, 0)


class ListShowTest(unittest.TestCase):
    """One daemon run, four verifications: passed, failed, timed out, pending."""

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(IMPERAI_SIM):
            raise unittest.SkipTest("tests/sim/imperai_sim.py is not in this tree yet")
        s = cls.s = Stack()
        cls.addClassCleanup(s.close)
        s.start()
        snow, imp = s.snow, s.imperai
        cls.t = {}
        for key, caller in (("passed", "abel.tuter"), ("failed", "beth.anglin"),
                            ("timed_out", "charlie.whitherspoon"), ("pending", "david.loo")):
            cls.t[key] = snow.create_ticket(category="password_reset", caller=caller,
                                            short_description="Reset my password (%s)" % key,
                                            description="Locked out after holidays.\nPlease help.")
        cls.other = snow.create_ticket(category="software", caller="fred.luddy",
                                       short_description="Excel crashes")
        cls.v = {k: s.wait_verification(t["number"]) for k, t in cls.t.items()}
        imp.act(cls.v["passed"]["id"], "send", recipient="abel.private@example.org",
                agent="Ivy Agent")
        imp.act(cls.v["passed"]["id"], "complete", outcome="passed", risk_score=1)
        imp.act(cls.v["failed"]["id"], "send", recipient="beth.private@example.org",
                agent="Fred Agent")
        imp.act(cls.v["failed"]["id"], "complete", outcome="failed", risk_score=9)
        imp.act(cls.v["timed_out"]["id"], "send", recipient="+15551230003", agent="Ivy Agent",
                channel="sms")
        imp.act(cls.v["timed_out"]["id"], "expire")
        for key in ("passed", "failed", "timed_out"):
            s.wait_status(cls.t[key]["number"], key)

    def number(self, key):
        return self.t[key]["number"]

    def list_json(self, *args):
        r = self.s.ctl("list", "--json", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def tickets(self, *args):
        return [r["ticket"] for r in self.list_json(*args)]

    def test_table_has_exactly_the_columns_and_one_row_per_verification(self):
        r = self.s.ctl("list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("\033", r.stdout, "no colour when stdout is not a terminal")
        header, rows = parse_table(r.stdout)
        self.assertEqual(re.split(r"  +", header.strip()), COLUMNS)
        self.assertEqual(sorted(row["TICKET"] for row in rows),
                         sorted(t["number"] for t in self.t.values()))
        by = {row["TICKET"]: row for row in rows}
        passed, failed = by[self.number("passed")], by[self.number("failed")]
        self.assertEqual(passed["STATUS"], "Passed")
        self.assertEqual(passed["RISK"], "Verified")
        self.assertEqual(passed["REQUESTER"], "Abel Tuter")
        self.assertEqual(passed["INITIATED BY"], "Ivy Agent")
        self.assertEqual(passed["CATEGORY"], "password_reset")
        self.assertIn("@", passed["EMAIL"])
        self.assertIn("*", passed["EMAIL"])
        self.assertEqual((failed["STATUS"], failed["RISK"], failed["INITIATED BY"]),
                         ("Failed", "High", "Fred Agent"))
        timed_out = by[self.number("timed_out")]
        self.assertEqual((timed_out["STATUS"], timed_out["RISK"]), ("Timed out", "-"))
        self.assertEqual(by[self.number("pending")]["STATUS"], "Pending")
        for row in rows:
            self.assertRegex(row["TIME"], MINUTE)
        for text in ("abel.private@example.org", "+15551230003", self.other["number"]):
            self.assertNotIn(text, r.stdout)

    def on_a_terminal(self, **env):
        """list with stdout on a pseudo-terminal; returns what it printed."""
        master, slave = pty.openpty()
        r = subprocess.run([CTL, "-c", self.s.conf, "list"], stdout=slave,
                           stderr=subprocess.PIPE, env=dict(self.s.env(), **env), timeout=30)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed and drained
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        self.assertEqual(r.returncode, 0, r.stderr)
        return out.decode()

    def test_colour_only_on_a_terminal_without_no_color(self):
        out = self.on_a_terminal(TERM="xterm")
        self.assertIn("\033[32mPassed\033[0m", out)
        self.assertIn("\033[31mHigh\033[0m", out)
        self.assertNotIn("\033[", out.split("\n")[0], "the header is plain")
        self.assertNotIn("\033", self.on_a_terminal(TERM="xterm", NO_COLOR="1"))
        self.assertNotIn("\033", self.on_a_terminal(TERM="dumb"))

    def test_newest_first_by_default_and_sort_options(self):
        times = [r["time"] for r in self.list_json()]
        self.assertEqual(times, sorted(times, reverse=True))
        self.assertEqual([r["time"] for r in self.list_json("--reverse")], sorted(times))
        numbers = self.tickets("--sort", "ticket")
        self.assertEqual(numbers, sorted(numbers))
        self.assertEqual(self.tickets("--sort", "ticket", "--reverse"), sorted(numbers)[::-1])
        self.assertEqual(self.tickets("--sort", "risk")[0], self.number("failed"))
        self.assertEqual(len(self.tickets("--limit", "2")), 2)
        self.assertEqual(self.tickets("--limit", "0"), [])

    def test_filters(self):
        n = self.number
        self.assertEqual(self.tickets("--status", "passed"), [n("passed")])
        self.assertEqual(sorted(self.tickets("--status", "Failed,timed_out")),
                         sorted([n("failed"), n("timed_out")]))
        self.assertEqual(sorted(self.tickets("--status", "failed", "--status", "PASSED")),
                         sorted([n("passed"), n("failed")]))
        self.assertEqual(self.tickets("--risk", "high"), [n("failed")])
        self.assertEqual(self.tickets("--risk", "verified"), [n("passed")])
        self.assertEqual(self.tickets("--ticket", n("failed").lower()), [n("failed")])
        self.assertEqual(len(self.tickets("--category", "password_reset")), 4)
        self.assertEqual(self.tickets("--category", "software"), [])
        self.assertEqual(sorted(self.tickets("--agent", "ivy")),
                         sorted([n("passed"), n("timed_out")]))
        self.assertEqual(len(self.tickets("--since", "1h")), 4)
        self.assertEqual(len(self.tickets("--since", "2000-01-01", "--until", "2999-01-01 00:00")), 4)
        self.assertEqual(self.tickets("--until", "2000-01-01"), [])
        r = self.s.ctl("list", "--status", "passed", "--risk", "high")
        self.assertEqual(r.returncode, 0, "an empty result is not an error")
        self.assertEqual(r.stdout.split("\n")[1:], [""])

    def test_json_and_csv_parse_back_and_agree_with_the_table(self):
        rows = self.list_json()
        for row in rows:
            self.assertEqual(set(row), JSON_FIELDS)
            self.assertRegex(row["time"], RFC3339)
            self.assertEqual(row["table"], "incident")
        by = {r["ticket"]: r for r in rows}
        self.assertEqual(by[self.number("timed_out")]["status"], "timed_out")
        self.assertEqual(by[self.number("failed")]["risk_level"], "high")
        self.assertEqual(by[self.number("failed")]["risk_score"], 9)
        self.assertIsNone(by[self.number("pending")]["risk_level"])
        self.assertEqual(by[self.number("passed")]["verification_id"], self.v["passed"]["id"])
        self.assertEqual(by[self.number("passed")]["sys_id"], self.t["passed"]["sys_id"])
        r = self.s.ctl("list", "--csv", raw=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.endswith(b"\r\n"))
        self.assertEqual(r.stdout.count(b"\n"), r.stdout.count(b"\r\n"), "CRLF line ends only")
        records = list(csv.reader(io.StringIO(r.stdout.decode(), newline="")))
        self.assertEqual(records[0], COLUMNS)
        table = parse_table(self.s.ctl("list").stdout)[1]
        self.assertEqual([dict(zip(COLUMNS, rec)) for rec in records[1:]], table)
        self.assertEqual([rec[0] for rec in records[1:]], [r["ticket"] for r in rows])

    def show(self, what, *args):
        r = self.s.ctl("show", what, *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_show_of_a_passed_verification(self):
        out = self.show(self.number("passed"))
        self.assertIn(self.number("passed"), out)
        self.assertIn("Reset my password (passed)", out)
        self.assertRegex(out, r"Requested action: +password_reset")
        self.assertIn("Abel Tuter", out)
        self.assertRegex(out, r"Status: +Passed")
        self.assertRegex(out, r"Risk: +Verified \(score 1")
        self.assertRegex(out, r"Initiated by: +Ivy Agent")
        self.assertIn("User verified successfully - Proceed with action", out)
        self.assertIn("%s/incident.do?sys_id=%s" % (self.s.snow.url, self.t["passed"]["sys_id"]),
                      out)
        self.assertIn("/verifications/%s" % self.v["passed"]["id"], out)
        self.assertRegex(out, r"History:\n  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  untracked -> ")
        self.assertNotIn("abel.private@example.org", out)

    def test_show_has_the_description_and_the_requesters_address(self):
        out = self.show(self.number("pending"))
        self.assertIn("Locked out after holidays.", out)
        self.assertRegex(out, r"Requester: +David Loo <d\*+o@e\*+\.com>")

    def test_show_of_a_failed_verification(self):
        out = self.show(self.number("failed"))
        self.assertRegex(out, r"Status: +Failed")
        self.assertRegex(out, r"Risk: +High \(score 9")
        self.assertIn("High risk detected - Reject this request", out)
        self.assertRegex(out, r"Initiated by: +Fred Agent")

    def test_show_of_a_timed_out_verification(self):
        out = self.show(self.number("timed_out"))
        self.assertRegex(out, r"Status: +Timed out")
        self.assertRegex(out, r"Risk: +-")
        self.assertRegex(out, r"Channel: +sms")
        self.assertNotIn("5551230003", out)

    def test_show_by_verification_id_and_as_json(self):
        vid = self.v["failed"]["id"]
        self.assertIn(self.number("failed"), self.show(vid))
        o = json.loads(self.show(vid, "--json"))
        self.assertEqual(o["ticket"], self.number("failed"))
        self.assertEqual(o["verification"]["id"], vid)
        self.assertEqual(o["verification"]["status"], "failed")
        self.assertEqual(o["verification"]["risk_level"], "high")
        self.assertEqual(o["requester"]["name"], "Beth Anglin")
        self.assertEqual(o["links"]["ticket"], "%s/incident.do?sys_id=%s"
                         % (self.s.snow.url, self.t["failed"]["sys_id"]))
        self.assertIsInstance(o["history"], list)
        self.assertTrue(o["history"])
        self.assertIsInstance(o["pending_writes"], list)

    def test_show_of_something_unknown_exits_1(self):
        r = self.s.ctl("show", "INC9999999")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no such ticket or verification: INC9999999", r.stderr)

    def test_status_of_a_running_daemon_exits_0(self):
        r = self.s.wait(lambda: (lambda r: r if r.returncode == 0 else None)(self.s.ctl("status")),
                        20, "status to exit 0")
        self.assertIn("running, pid %d" % self.s.daemon.proc.pid, r.stdout)
        self.assertIn("incident", r.stdout)
        o = json.loads(self.s.ctl("status", "--json").stdout)
        self.assertTrue(o["running"])
        self.assertEqual(o["exit_code"], 0)
        self.assertGreaterEqual(o["tickets"]["total"], 4)
        self.assertIn("incident", o["tables"])
        self.assertEqual(o["attention"], [])

    def test_secrets_appear_in_no_output(self):
        runs = [("status",), ("status", "--json"), ("list",), ("list", "--json"),
                ("show", self.number("passed")), ("show", self.number("failed"), "--json"),
                ("check-config",), ("check-config", "--probe"), ("audit", "export")]
        for args in runs:
            r = self.s.ctl(*args)
            for secret in (SNOW_PASSWORD, IMPERAI_KEY):
                self.assertNotIn(secret, r.stdout + r.stderr, args)
        with open(self.s.daemon.log_path, errors="replace") as f:
            log = f.read()
        for secret in (SNOW_PASSWORD, IMPERAI_KEY):
            self.assertNotIn(secret, log)

    def hide_secrets(self, how):
        """Makes every secret unreadable until the test ends: "dir" puts a
        directory where each file was (unreadable even by root), "mode"
        closes the credentials directory (mode 000)."""
        creds = self.s.creds
        if how == "mode":
            os.chmod(creds, 0)
            self.addCleanup(os.chmod, creds, 0o700)
            return
        for name in ("servicenow-password", "imperai-api-key"):
            path = os.path.join(creds, name)
            os.rename(path, path + ".away")
            os.mkdir(path)
            self.addCleanup(os.rename, path + ".away", path)
            self.addCleanup(os.rmdir, path)

    def test_read_only_commands_open_no_secret(self):
        self.s.wait(lambda: self.s.ctl("status").returncode == 0, 20, "status to exit 0")
        self.hide_secrets("dir")
        for args in (("list",), ("list", "--json"), ("show", self.number("passed")),
                     ("status",), ("audit", "verify"), ("audit", "export"), ("check-config",)):
            r = self.s.ctl(*args)
            self.assertEqual(r.returncode, 0, "%s: %s" % (args, r.stderr))
            self.assertNotIn("secret", r.stderr, args)
        self.assertIn("secrets not read", self.s.ctl("check-config").stdout)
        # What logs in still needs them, and says which one it could not read.
        r = self.s.ctl("check-config", "--probe")
        self.assertEqual(r.returncode, EX_CONFIG, r.stdout + r.stderr)
        self.assertIn("servicenow-password", r.stderr)

    def test_commands_that_log_in_say_they_need_root_for_the_secrets(self):
        if os.geteuid() == 0:
            self.skipTest("root reads a closed directory anyway")
        self.hide_secrets("mode")
        self.assertEqual(self.s.ctl("list").returncode, 0)
        for args in (("check-config", "--probe"), ("rebuild",), ("setup",)):
            r = self.s.ctl(*args)
            self.assertEqual(r.returncode, EX_CONFIG, "%s: %s" % (args, r.stdout + r.stderr))
            self.assertIn("Permission denied", r.stderr, args)
            self.assertIn("run it as root", r.stderr, args)

    def test_audit_verify_and_export(self):
        r = self.s.ctl("audit", "verify")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        m = re.match(r"^audit: (\d+) entr(y|ies), chain intact$", r.stdout.strip())
        self.assertTrue(m, r.stdout)
        r = self.s.ctl("audit", "export")
        self.assertEqual(r.returncode, 0, r.stderr)
        entries = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertGreaterEqual(len(entries), int(m.group(1)))
        seqs = [e["seq"] for e in entries]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))
        for e in entries:
            self.assertEqual(set(e) >= {"seq", "time", "prev", "event"}, True)
            self.assertRegex(e["time"], RFC3339, "the same times as list --json")
        self.assertEqual(self.s.ctl("audit", "export", "--since", "2999-01-01").stdout, "")

    def test_resync_and_retry_queue_requests(self):
        r = self.s.ctl("resync", self.number("passed"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "queued: resync %s (the daemon picks it up within a "
                         "few seconds)" % self.number("passed"))
        r = self.s.ctl("resync", "INC9999999")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no such ticket: INC9999999", r.stderr)
        r = self.s.ctl("retry")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("nothing to retry", r.stdout)
        r = self.s.ctl("retry", "999999")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no such pending write: 999999", r.stderr)


class AttemptsTest(unittest.TestCase):
    """show lists every attempt of a ticket whose verification timed out."""

    def test_show_lists_the_timed_out_attempt_and_the_current_one(self):
        flows = harness.FLOWS.replace("    retry: { on: [], max: 0 }\n", "") % {
            "categories": "password_reset"}
        s = Stack(self, flows=flows).start()
        t = s.snow.create_ticket(category="password_reset", caller="abel.tuter")
        v1 = s.wait_verification(t["number"])
        s.imperai.act(v1["id"], "expire")

        want = re.compile(r"Attempts:\n  1\. %s  Timed out  \d{4}-\d\d-\d\d "
                          r"\d\d:\d\d:\d\d UTC\n  2\. (vr_\w+)  Pending \(current\)"
                          % re.escape(v1["id"]))
        out = s.wait(lambda: want.search(s.ctl("show", t["number"]).stdout),
                     what="show to list attempt 2")
        self.assertNotEqual(out.group(1), v1["id"])
        o = json.loads(s.ctl("show", t["number"], "--json").stdout)
        self.assertEqual([(a["attempt"], a["status"]) for a in o["attempts"]],
                         [(1, "timed_out"), (2, "pending")])
        self.assertEqual(o["attempts"][0]["verification"], v1["id"])
        self.assertEqual(o["attempts_allowed"], 3)


class StoppedDaemonTest(unittest.TestCase):
    """status once the daemon is gone, and audit verify on a tampered log."""

    def test_status_exits_2_after_stop_and_audit_verify_finds_a_tampered_entry(self):
        need_simulators(self)
        s = Stack(self).start()
        t = s.snow.create_ticket(category="password_reset", caller="abel.tuter")
        v = s.wait_verification(t["number"])
        s.imperai.act(v["id"], "send", recipient="abel.private@example.org", agent="Ivy Agent")
        s.wait_status(t["number"], "link_sent")
        s.wait(lambda: s.ctl("status").returncode == 0, 20, "status to exit 0")
        intact = s.ctl("audit", "verify")
        self.assertEqual(intact.returncode, 0, intact.stdout + intact.stderr)
        n = int(re.match(r"audit: (\d+) ", intact.stdout).group(1))
        self.assertGreaterEqual(n, 2, "the run should have audited a few events")
        self.assertEqual(s.stop_daemon(), 0, s.logs())
        r = s.ctl("status")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("not running", r.stdout)
        self.assertEqual(json.loads(s.ctl("status", "--json").stdout)["running"], False)
        r = s.ctl("list", "--json")
        self.assertEqual(r.returncode, 0, "list works without the daemon: " + r.stderr)
        self.assertEqual(len(json.loads(r.stdout)), 1)
        tamper = subprocess.run([AUDIT_TAMPER, s.state, "1"], capture_output=True, text=True,
                                timeout=30)
        self.assertEqual(tamper.returncode, 0, tamper.stderr)
        r = s.ctl("audit", "verify")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        # Entry 1 altered: its successor's link (or, if last, the head) breaks.
        self.assertRegex(r.stdout, r"^audit: chain broken at entry [12]: ")


class FreshInstallTest(unittest.TestCase):
    """status before the daemon ever ran: the state directory exists, empty."""

    def test_status_exits_2_and_creates_nothing(self):
        need_simulators(self)
        s = Stack(self).start_sims().write_config()
        os.makedirs(s.state, mode=0o750)
        r = s.ctl("status")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("not running: it has never run with the state directory %s" % s.state,
                      r.stdout)
        o = json.loads(s.ctl("status", "--json").stdout)
        self.assertEqual((o["running"], o["exit_code"]), (False, 2))
        self.assertEqual(os.listdir(s.state), [], "a reader must not create lock.mdb")
        self.assertEqual(s.ctl("list").returncode, 1)
        s.start_daemon()
        s.wait(lambda: s.ctl("status").returncode == 0, 20, "status to exit 0")
        modes = {n: os.stat(os.path.join(s.state, n)).st_mode & 0o777
                 for n in ("data.mdb", "lock.mdb")}
        self.assertEqual(modes, {"data.mdb": 0o640, "lock.mdb": 0o660},
                         "the daemon's group reads the state")


class RequesterChangeAndAttentionTest(unittest.TestCase):
    def setUp(self):
        need_simulators(self)
        self.s = Stack(self).start()

    def test_a_requester_change_lists_the_canceled_request_and_the_new_one(self):
        s = self.s
        t = s.snow.create_ticket(category="password_reset", caller="abel.tuter")
        old = s.wait_verification(t["number"])
        s.snow.patch("incident", t["sys_id"], caller_id="beth.anglin")
        rows = s.wait(lambda: (lambda r: r if len(r) == 2 else None)(
            s.ctl_json("list", "--json", "--ticket", t["number"])), 20, "a second request")
        by = {r["verification_id"]: r for r in rows}
        self.assertEqual((by[old["id"]]["status"], by[old["id"]]["state"]),
                         ("canceled", "superseded"))
        self.assertIsNone(by[old["id"]]["requester"], "the old request is not Beth's")
        new = [r for r in rows if r["verification_id"] != old["id"]][0]
        self.assertEqual(new["requester"], "Beth Anglin")
        out = s.ctl("show", old["id"]).stdout
        self.assertIn("%s was canceled when the requester changed" % old["id"], out)
        self.assertIn("Verification:      %s" % new["verification_id"], out)

    def test_status_exits_3_when_imperai_stops_answering(self):
        s = self.s
        s.wait(lambda: s.ctl("status").returncode == 0, 20, "status to exit 0")
        s.imperai.control.ok("POST", "/sim/outage", {"seconds": 3600})
        r = s.wait(lambda: (lambda r: r if r.returncode == 3 else None)(s.ctl("status")), 30,
                   "status to exit 3")
        self.assertIn("Attention:", r.stdout)
        self.assertIn("imper.ai change feed", r.stdout)
        o = json.loads(s.ctl("status", "--json").stdout)
        self.assertEqual(o["exit_code"], 3)
        self.assertTrue(any("imper.ai" in a for a in o["attention"]), o["attention"])


class ConcurrentListTest(unittest.TestCase):
    """The CLI reads while the daemon writes: never blocked, never torn."""

    def test_list_in_a_loop_while_the_daemon_writes(self):
        need_simulators(self)
        s = Stack(self).start()
        stop = threading.Event()
        errors = []

        def churn():
            try:
                for _ in range(8):
                    if stop.is_set():
                        return
                    made = s.snow.control.ok("POST", "/sim/tickets", {
                        "table": "incident", "count": 5, "caller": "bud.richman",
                        "fields": {"category": "password_reset",
                                   "short_description": "Reset please"}})["tickets"]
                    numbers = {t["number"] for t in made}
                    harness.wait_until(
                        lambda: numbers <= {v["ticket"]["number"]
                                            for v in s.imperai.verifications()},
                        30, "imper.ai to hold requests for %s" % sorted(numbers))
                    for v in s.imperai.verifications():
                        if v["ticket"]["number"] in numbers:
                            s.imperai.act(v["id"], "send", recipient="bud@example.org",
                                          agent="Ivy Agent")
                            s.imperai.act(v["id"], "complete", outcome="passed", risk_score=2)
            except Exception as e:  # reported by the main thread
                errors.append(e)

        writer = threading.Thread(target=churn, daemon=True)
        writer.start()
        try:
            s.wait(lambda: len(s.ctl_json("list", "--json")) >= 5, 30,
                   "the daemon to record some verifications")
            seen = runs = during = 0
            while runs < 30 or (writer.is_alive() and runs < 500):
                runs += 1
                during += writer.is_alive()
                r = s.ctl("list", "--json")
                self.assertEqual(r.returncode, 0, r.stderr)
                rows = json.loads(r.stdout)
                self.assertGreaterEqual(len(rows), seen, "rows never disappear")
                seen = len(rows)
                self.assertIn(s.ctl("status").returncode, (0, 3))
        finally:
            stop.set()
            writer.join(30)
        self.assertEqual(errors, [])
        self.assertGreater(during, 10, "list ran while the daemon was writing")
        self.assertTrue(s.daemon.running(), s.logs())


if __name__ == "__main__":
    unittest.main(verbosity=2)
