#!/usr/bin/env python3
"""imperai-snowd against ServiceNow as it really behaves (issue 14): the
simulator's switchable real-instance behaviours (field read ACLs,
references stored as given, ...) on, and the daemon checked from the
simulators' own records."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import EX_UNAVAILABLE, Stack  # noqa: E402
from test_e2e import CREATE, FIELD, Scenario  # noqa: E402

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


if __name__ == "__main__":
    unittest.main(verbosity=2)
