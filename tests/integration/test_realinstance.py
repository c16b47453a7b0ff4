#!/usr/bin/env python3
"""imperai-snowd against ServiceNow as it really behaves (issue 14): the
simulator's switchable real-instance behaviours (field read ACLs,
references stored as given, ...) on, and the daemon checked from the
simulators' own records."""
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import EX_CONFIG, EX_UNAVAILABLE, Stack  # noqa: E402
from test_e2e import CREATE, FIELD, REF, SEND_LINK, Scenario, shipped_flows  # noqa: E402

HIDE_REQUESTER = {"imperai.integration": ["sys_user.name", "sys_user.email",
                                          "sys_user.user_name"]}


class UnreadableRequesterTest(unittest.TestCase):
    def test_no_request_while_the_requester_cannot_be_read_and_one_once_it_can(self):
        sc = Scenario(self).start()
        snow = sc.snow.control
        snow.ok("POST", "/sim/settings", {"field_acl": HIDE_REQUESTER})
        mark = sc.stack.daemon.log_size()
        t = sc.create(category="password_reset")
        note = sc.wait_tag(t, "requester_unreadable")
        self.assertIn("the requester could not be read", note)
        self.assertIn("read access", note)
        self.assertIn("could not be read", sc.field(t))
        self.assertIn("sys_user.email", sc.field(t))
        self.assertNotIn("Send Verification link", sc.field(t))
        # An agent edit shows the ticket again, still unreadable: nothing new.
        snow.ok("POST", "/sim/update", {"sys_id": t["sys_id"], "user": "itil.agent",
                                         "fields": {"short_description": "Locked out"}})
        sc.settle()
        self.assertEqual(sc.requests_for(t), [])
        self.assertEqual(sc.imp_stats().get(CREATE, 0), 0)
        warned = [ln for ln in sc.stack.daemon.lines_since(mark)
                  if "requester could not be read" in ln]
        self.assertEqual(len(warned), 1, "\n".join(warned))
        self.assertIn("INC", warned[0])
        # The admin grants read access; the next observation proceeds.
        snow.ok("POST", "/sim/settings", {"field_acl": {}})
        snow.ok("POST", "/sim/update", {"sys_id": t["sys_id"], "user": "itil.agent",
                                         "fields": {"work_notes": "ACL fixed"}})
        sc.wait_link(t)
        reqs = sc.requests_for(t)
        self.assertEqual(len(reqs), 1)
        self.assertEqual(reqs[0]["requester"]["email"], "abel.tuter@example.com")
        sc.assert_one_note_per_event(t, ["requester_unreadable", "link"])
        self.assertNotIn("could not be read", sc.record(t)[FIELD])


class RequesterProbeTest(unittest.TestCase):
    def test_probe_and_setup_say_the_requester_cannot_be_read_and_what_to_grant(self):
        s = Stack(self).start_sims().write_config()
        r = s.ctl("check-config", "--probe")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no ticket with a requester to read", r.stdout)
        s.snow.create_ticket("incident", "abel.tuter", category="password_reset")
        r = s.ctl("check-config", "--probe")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("the requester of INC", r.stdout)
        s.snow.control.ok("POST", "/sim/settings", {"field_acl": HIDE_REQUESTER})
        r = s.ctl("check-config", "--probe")
        self.assertEqual(r.returncode, EX_UNAVAILABLE, r.stdout + r.stderr)
        self.assertIn("imperai.integration cannot read the requester of INC", r.stderr)
        self.assertIn("grant it read access to sys_user.name, sys_user.email and "
                      "sys_user.user_name", r.stderr)
        r = s.ctl("setup")
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertRegex(r.stdout, r"missing: +incident: imperai\.integration cannot read "
                                   r"the requester of INC")


def group_sys_id(snow, name):
    groups = snow.control.ok("GET", "/sim/dump")["tables"]["sys_user_group"]
    return [g["sys_id"] for g in groups if g["name"] == name][0]


class ReferenceTest(unittest.TestCase):
    def test_a_group_given_by_name_lands_as_its_sys_id(self):
        # ServiceNow stores a reference written by name as given: make the
        # simulator do so, so only a sys_id written by the daemon can work.
        sc = Scenario(self).start()
        t = sc.create(category="password_reset")  # its caller given by user name
        sc.snow.control.ok("POST", "/sim/settings", {"reference_input": "as_given"})
        sc.verify_through_pages(t, answers=("fail", "x", "y"))
        note = sc.wait_tag(t, "on_fail")
        self.assertIn("Reassigned to Service Desk Security", note)
        rec = sc.record(t)
        self.assertEqual(rec["assignment_group"], group_sys_id(sc.snow, "Service Desk Security"))
        patches = [w["fields"] for w in sc.writes(t) if "assignment_group" in w["fields"]]
        self.assertTrue(all(re.fullmatch("[0-9a-f]{32}", p["assignment_group"]) for p in patches))

    def test_a_start_while_servicenow_cannot_be_asked_looks_the_group_up_later(self):
        # ServiceNow busy for the lookups at start: the daemon starts all the
        # same and looks the group up once its polls reach ServiceNow.
        sc = Scenario(self)
        sc.stack.start_sims()
        busy = {"status": 503, "ctype": "application/json",
                "body": '{"error":{"message":"busy"},"status":"failure"}'}
        sc.snow.scripted("GET", path="/api/now/table/sys_user_group", answers=[busy, busy])
        sc.stack.write_config().start_daemon()
        sc.wait(lambda: [x for x in sc.stack.daemon.lines_since(0)
                         if "references looked up: on_fail reassigns again" in x],
                "the group looked up once ServiceNow answers", timeout=90)
        self.assertIn("starting without a reference", "\n".join(sc.stack.daemon.lines_since(0)))
        t = sc.create(category="password_reset")
        sc.verify_through_pages(t, answers=("fail", "x", "y"))
        self.assertIn("Reassigned to Service Desk Security", sc.wait_tag(t, "on_fail"))
        self.assertEqual(sc.record(t)["assignment_group"],
                         group_sys_id(sc.snow, "Service Desk Security"))

    def test_a_group_that_matches_nothing_is_a_configuration_error(self):
        flows = shipped_flows().replace('assignment_group: "Service Desk Security"',
                                        'assignment_group: "Service Desk Securty"', 1)
        self.assertNotEqual(flows, shipped_flows())
        s = Stack(self, flows=flows).start_sims().write_config()
        line = [i + 1 for i, ln in enumerate(flows.splitlines()) if "Securty" in ln][0]
        r = s.ctl("check-config", "--probe")
        self.assertEqual(r.returncode, EX_UNAVAILABLE, r.stdout + r.stderr)
        self.assertRegex(r.stderr, r"flows\.yaml:%d:\d+: flows\[[^]]+\]\.on_fail\."
                                   r"assignment_group: \"Service Desk Securty\" matches no "
                                   r"group" % line)
        d = subprocess.run([harness.DAEMON, "-f", "-c", s.conf], capture_output=True,
                           text=True, env=s.env(), timeout=60)
        self.assertEqual(d.returncode, EX_CONFIG, d.stdout + d.stderr)
        self.assertIn("Service Desk Securty", d.stdout + d.stderr)

    def test_a_reload_with_a_group_that_matches_nothing_keeps_the_old_policy(self):
        sc = Scenario(self).start()
        mark = sc.stack.daemon.log_size()
        path = os.path.join(sc.stack.dir, "flows.yaml")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("Service Desk Security", "No Such Group", 1))
        sc.stack.daemon.proc.send_signal(signal.SIGHUP)
        sc.wait(lambda: any("reload failed: keeping" in ln
                            for ln in sc.stack.daemon.lines_since(mark)), "the refused reload")
        lines = "\n".join(sc.stack.daemon.lines_since(mark))
        self.assertIn('No Such Group\\" matches no group', lines)
        # The old policy still reassigns to the real group, by sys_id.
        t = sc.create(category="password_reset")
        sc.verify_through_pages(t, answers=("fail", "x", "y"))
        sc.wait_tag(t, "on_fail")
        self.assertEqual(sc.record(t)["assignment_group"],
                         group_sys_id(sc.snow, "Service Desk Security"))

    def test_a_group_name_held_by_two_groups_is_a_configuration_error(self):
        s = Stack(self, flows=shipped_flows()).start_sims().write_config()
        s.snow.control.ok("POST", "/sim/update", {
            "table": "sys_user_group", "sys_id": group_sys_id(s.snow, "Service Desk"),
            "fields": {"name": "Service Desk Security"}})
        r = s.ctl("check-config", "--probe")
        self.assertEqual(r.returncode, EX_UNAVAILABLE, r.stdout + r.stderr)
        self.assertIn('"Service Desk Security" matches several groups', r.stderr)


class CommitLagTest(unittest.TestCase):
    """Rows committed twice poll_overlap (2 s in the tests) after their
    sys_updated_on are behind the watermark when they appear: only the
    sweep (every 3 s here) can find them."""

    SWEEP = 3

    def test_lag_of_twice_the_overlap_every_ticket_handled_within_one_sweep(self):
        s = Stack(self, flows=shipped_flows(),
                  snow_extra="  sweep_interval = %d;\n" % self.SWEEP).start()
        sc = Scenario.__new__(Scenario)
        sc.test, sc.stack, sc.snow, sc.imp, sc.tables = self, s, s.snow, s.imperai, ["incident"]
        snow = s.snow.control
        control = sc.create(category="password_reset")
        sc.wait_link(control)
        mark = s.daemon.log_size()
        snow.ok("POST", "/sim/settings", {"commit_lag": 4})
        made = snow.ok("POST", "/sim/tickets", {"count": 6, "caller": "abel.tuter",
                                                "fields": {"category": "password_reset"}})
        lagged = [dict(t, table="incident") for t in made["tickets"]]
        # Meanwhile the watermark moves on: the control ticket keeps changing.
        stop = threading.Event()

        def edits():
            n = 0
            while not stop.wait(0.5):
                n += 1
                s.snow.patch("incident", control["sys_id"], short_description="edit %d" % n)
        editor = threading.Thread(target=edits)
        editor.start()
        try:
            for t in lagged:
                f = sc.wait(lambda t=t: (lambda f: f if f and SEND_LINK.search(f) else None)(
                    sc.field(t)), "the send link in %s" % t["number"],
                    timeout=4 + self.SWEEP + 10)
                self.assertEqual(REF.search(f).group(1), "1")
        finally:
            stop.set()
            editor.join()
        log = "\n".join(s.daemon.lines_since(mark))
        self.assertIn("sweep found a ticket the poll missed", log)
        self.assertIn("raise servicenow.poll_overlap", log)
        for t in lagged:
            self.assertEqual(len(sc.requests_for(t)), 1, t["number"])
        said = re.compile(r"sweep: \d+ runs, [1-9]\d* missed tickets found(.|\n)*"
                          r"visible later than poll_overlap allows, largest lag [3-9] s")
        # the status snapshot is rewritten every few seconds
        sc.wait(lambda: said.search(s.ctl("status").stdout), "status to show the lag")


class ProxyPageTest(unittest.TestCase):
    def test_an_html_400_on_read_backs_and_the_outcome_lands_without_operator_action(self):
        sc = Scenario(self).start()
        t = sc.create(category="password_reset")
        result = sc.verify_through_pages(t)
        sc.wait_tag(t, "outcome")
        mark = sc.stack.daemon.log_size()
        # A proxy answers the next single-record GETs (the read-back before
        # the resolving PATCH) with its own HTML 400.
        sc.snow.control.ok("POST", "/sim/faults", {"proxy_count": 3, "proxy_status": 400,
                                                   "path_prefix": "/api/"})
        sc.reset_password(result)
        sc.wait_tag(t, "resolved")
        self.assertEqual(sc.record(t)["state"], "7")
        faults = sc.snow.control.ok("GET", "/sim/stats")["faults"]
        self.assertEqual(faults.get("proxy_html"), 3, faults)
        log = "\n".join(sc.stack.daemon.lines_since(mark))
        self.assertIn("not ServiceNow's JSON error", log)
        self.assertNotIn("parked", log)
        sc.assert_one_note_per_event(t, ["link", "sent", "progress", "outcome", "resolved"])

    def test_an_html_404_from_a_proxy_on_a_write_does_not_drop_it(self):
        sc = Scenario(self).start()
        t = sc.create(category="password_reset")
        sc.wait_link(t)
        sc.snow.control.ok("POST", "/sim/faults", {"proxy_count": 1, "proxy_status": 404,
                                                   "proxy_methods": ["PATCH"],
                                                   "path_prefix": "/api/"})
        _, url = sc.wait_link(t)
        sc.send(t, url)
        sc.wait_tag(t, "sent")
        faults = sc.snow.control.ok("GET", "/sim/stats")["faults"]
        self.assertEqual(faults.get("proxy_html"), 1, faults)
        sc.assert_one_note_per_event(t, ["link", "sent"])


class ParkedWriteTest(unittest.TestCase):
    """A write ServiceNow keeps refusing (a business rule failing on it)
    parks only once a read-back shows it did not land; parked, it does not
    hold back the ticket's later writes, which carry the complete field;
    released, it goes without its field (which would take the ticket back),
    and its work note lands once."""

    FAIL = {"status": 500, "ctype": "application/json",
            "body": '{"error":{"message":"Operation Failed","detail":"Error during update '
                    'of incident (business rule)"},"status":"failure"}'}

    def test_a_parked_write_steps_aside_and_its_note_lands_once_released(self):
        sc = Scenario(self, snow_extra="  write_attempts = 2;\n  parked_retry = 0;\n").start()
        # the ticket's first PATCH (its link) is refused twice, then all is well
        sc.snow.scripted("PATCH", path_prefix="/api/now/table/incident/",
                         answers=[self.FAIL, self.FAIL])
        t = sc.create(category="password_reset")
        sc.wait(lambda: [x for x in sc.stack.daemon.lines_since(0)
                         if "write parked after repeated failures: it did not land" in x],
                "the link's PATCH parked after its read-back")
        sc.wait(lambda: sc.stack.ctl_json("status", "--json")["outbox"]["parked"] == 1,
                "the parked write in the store")
        self.assertIsNone(sc.field(t))
        # the agent sends the link all the same (from imper.ai's own console)
        sc.act(sc.requests_for(t)[0]["id"], "send", recipient="abel.private@example.org",
               agent="Ivy Agent")
        sc.wait_tag(t, "sent")
        self.assertIn("Waiting for the requester to verify.", sc.field(t))
        self.assertEqual(sc.stack.ctl_json("status", "--json")["outbox"]["parked"], 1)
        # the admin fixed the business rule: retry releases the parked write
        sc.stack.ctl("retry")
        sc.wait_tag(t, "link")
        sc.wait(lambda: sc.stack.ctl_json("status", "--json")["outbox"]["pending"] == 0,
                "an empty outbox")
        self.assertIn("Waiting for the requester to verify.", sc.field(t))
        self.assertEqual(sorted(x[0] for x in sc.tags(t)), ["link", "sent"])
        log = "\n".join(sc.stack.daemon.lines_since(0))
        self.assertIn("parked write sent without its field: a later one landed first", log)
        # the link's PATCH as it finally went: its note, not its field
        last = [w for w in sc.writes(t) if "work_notes" in w["fields"]
                and "[imper.ai link" in w["fields"]["work_notes"]]
        self.assertEqual(len(last), 1, last)
        self.assertNotIn(FIELD, last[0]["fields"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
