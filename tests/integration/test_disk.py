#!/usr/bin/env python3
"""Disk and store (issue #7, item 7): the LMDB map filling up, and the disk
under the state directory filling up.

What a full disk must do (imperai-snowd(8), DIAGNOSTICS): the daemon keeps
running and keeps its connections, sends nothing for decisions it could
not commit, says once which directory is full and what to do, loses
nothing, and when space returns the pending work completes once.

The full disk is made two ways: an LD_PRELOAD shim (tests/integration/
enospc.c) that fails writes under the state directory while a flag file
exists, which works anywhere and fails every commit; and, where root may
mount one, a real small tmpfs filled to the last byte."""
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import TOP_BUILD, Stack  # noqa: E402

SHIM = os.path.join(TOP_BUILD, "tests", "integration", "enospc.so")
FULL_LINE = r"^\S+ err cannot write the state store: nothing is sent until it can; .*dir=%s"


def lmdb_map(path):
    """(map size, used bytes) from the newest meta page of data.mdb."""
    with open(os.path.join(path, "data.mdb"), "rb") as f:
        head = f.read(8192)
    best = None
    for page in (0, 4096):
        magic, = struct.unpack_from("<I", head, page + 16)
        if magic != 0xBEEFC0DE:
            continue
        mapsize, = struct.unpack_from("<Q", head, page + 32)
        last_pg, txnid = struct.unpack_from("<QQ", head, page + 136)
        if best is None or txnid > best[0]:
            best = (txnid, mapsize, (last_pg + 1) * 4096)
    return best[1], best[2]


class DiskCase(unittest.TestCase):
    def notes(self, ticket):
        return [w["fields"]["work_notes"] for w in self.stack.snow.writes("incident",
                                                                          ticket["sys_id"])
                if "work_notes" in w["fields"]]

    def link_written(self, ticket):
        return any("u_imperai_verification" in w["fields"]
                   for w in self.stack.snow.writes("incident", ticket["sys_id"]))

    def outcome_written(self, ticket):
        return any("Verification Outcome: Passed" in w["fields"].get("u_imperai_verification", "")
                   for w in self.stack.snow.writes("incident", ticket["sys_id"]))

    def lines(self, pattern, mark=0):
        rx = re.compile(pattern)
        return [line for line in self.stack.daemon.lines_since(mark) if rx.search(line)]

    def assert_exactly_once(self, tickets):
        """Each ticket: one request at imper.ai, one link note."""
        for t in tickets:
            vs = [v for v in self.stack.imperai.verifications()
                  if v["ticket"]["number"] == t["number"]]
            self.assertEqual(len(vs), 1, t["number"])
            notes = [n for n in self.notes(t) if n.startswith("[imper.ai link ")]
            self.assertEqual(len(notes), 1, (t["number"], self.notes(t)))


class FullDiskShimTest(DiskCase):
    """Every write under the state directory fails while the flag exists."""

    def setUp(self):
        if not os.path.exists(SHIM):
            self.skipTest("%s is not built (make check builds it)" % SHIM)
        self.stack = Stack(self)
        self.flag = os.path.join(self.stack.dir, "disk-full")
        self.stack.daemon_env = {
            "LD_PRELOAD": SHIM, "ENOSPC_DIR": self.stack.state, "ENOSPC_FLAG": self.flag,
            # The shim comes before the sanitizer runtime of a --enable-sanitizers build.
            "ASAN_OPTIONS": "verify_asan_link_order=0:" + os.environ.get("ASAN_OPTIONS", "")}
        self.stack.start()

    def test_full_disk_stops_writes_keeps_running_and_resumes_once(self):
        st, snow, imp = self.stack, self.stack.snow, self.stack.imperai
        a = snow.create_ticket(category="password_reset")
        va = st.wait_verification(a["number"])
        st.wait(lambda: self.link_written(a), 20, "a's link")
        mark = st.daemon.log_size()
        open(self.flag, "w").close()
        patches = [w for w in snow.writes() if w["method"] == "PATCH"]
        # An outcome from imper.ai and a new ticket, while nothing can be committed.
        imp.act(va["id"], "send", recipient="abel@example.org", agent="Ivy")
        imp.act(va["id"], "complete", outcome="passed", risk_score=1)
        b = snow.create_ticket(category="password_reset")
        line = st.wait(lambda: self.lines(FULL_LINE % re.escape(st.state), mark), 20,
                       "the disk-full line")[0]
        self.assertIn("free space", line)
        # Several more steps meet the full disk: still one line, no writes.
        first = st.daemon.log_size()
        st.wait(lambda: len(self.lines(r"state changed ticket=%s .*why=new" % b["number"],
                                       first)) >= 3, 20, "three more polls seeing b")
        self.assertEqual(len(self.lines(r" err ", mark)), 1, st.daemon.log())
        # The polls keep their interval (1 s): a failed commit does not make
        # the daemon poll again at once, in a loop against the full disk.
        per_second = {}
        for line in self.lines(r"state changed ticket=%s .*why=new" % b["number"], mark):
            per_second[line.split()[0]] = per_second.get(line.split()[0], 0) + 1
        self.assertLessEqual(max(per_second.values()), 2, per_second)
        self.assertTrue(st.daemon.running())
        self.assertEqual([w for w in snow.writes() if w["method"] == "PATCH"], patches,
                         "a write went out for an uncommitted decision")
        self.assertIsNone(imp.verification_for(b["number"]))
        # Space returns: everything pending completes, once.
        os.unlink(self.flag)
        st.wait(lambda: self.outcome_written(a), 30, "a's outcome once the disk has room")
        st.wait_verification(b["number"], 30)
        st.wait(lambda: self.link_written(b), 30, "b's link once the disk has room")
        st.wait(lambda: self.lines(r"^\S+ notice state store writable again", mark), 20,
                "the recovery line")
        self.assert_exactly_once([a, b])
        outcome_notes = [n for n in self.notes(a) if n.startswith("[imper.ai outcome ")]
        self.assertEqual(len(outcome_notes), 1, self.notes(a))
        self.assertEqual(st.stop_daemon(), 0)


    def test_full_disk_when_a_queued_write_is_due_keeps_the_daemon_up(self):
        # A PATCH fails once (503) and waits in the outbox for its retry; the
        # disk fills before it: marking it attempted fails, so it is not
        # sent, and the daemon stays up (it used to exit 74).
        st, snow = self.stack, self.stack.snow
        snow.scripted("PATCH", path_prefix="/api/now/table/incident/",
                      answers=[{"status": 503, "body": "{}"}])
        a = snow.create_ticket(category="password_reset")
        st.wait(lambda: self.lines(r"write failed: will retry ticket=%s" % a["number"]), 20,
                "the first PATCH to fail")
        mark = st.daemon.log_size()
        open(self.flag, "w").close()
        st.wait(lambda: self.lines(FULL_LINE % re.escape(st.state), mark), 20,
                "the disk-full line")
        st.wait(lambda: self.lines(r"state store write failed failures=3", mark), 20,
                "more failed writes")
        self.assertTrue(st.daemon.running(), st.daemon.log())
        self.assertFalse(self.link_written(a))
        os.unlink(self.flag)
        st.wait(lambda: self.link_written(a), 30, "the link once the disk has room")
        self.assert_exactly_once([a])
        self.assertEqual(st.stop_daemon(), 0, st.daemon.log(200))


class FullTmpfsTest(DiskCase):
    """The state directory on a real tmpfs, filled up; root only."""

    def setUp(self):
        self.mnt = tempfile.mkdtemp(prefix="imperai-snow-tmpfs.")
        self.addCleanup(shutil.rmtree, self.mnt, True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs",
                            self.mnt], capture_output=True, text=True)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs here: %s" % r.stderr.strip())
        self.addCleanup(subprocess.run, ["umount", "-l", self.mnt], capture_output=True)
        self.stack = Stack(self)
        self.stack.state = os.path.join(self.mnt, "state")
        self.stack.start()
        self.filler = os.path.join(self.mnt, "filler")

    def fill(self):
        """Fills the filesystem to the last byte."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for size in (65536, 4096, 512, 1):
                try:
                    while os.write(fd, b"\0" * size) > 0:
                        pass
                except OSError:
                    pass
        finally:
            os.close(fd)

    def test_filled_tmpfs_loses_nothing_and_completes_once(self):
        st, snow = self.stack, self.stack.snow
        a = snow.create_ticket(category="password_reset")
        st.wait_verification(a["number"])
        mark = st.daemon.log_size()
        self.fill()
        out = snow.control.ok("POST", "/sim/tickets", {
            "table": "incident", "count": 40, "caller": "abel.tuter",
            "fields": {"category": "password_reset", "short_description": "tmpfs"}})
        tickets = [{"number": t["number"], "sys_id": t["sys_id"]} for t in out["tickets"]]
        st.wait(lambda: self.lines(FULL_LINE % re.escape(st.state), mark), 30,
                "the disk-full line")
        self.assertTrue(st.daemon.running())
        os.unlink(self.filler)
        st.wait(lambda: all(self.link_written(t) for t in tickets), 60,
                "every ticket's link once the disk has room")
        st.wait(lambda: self.lines(r"^\S+ notice state store writable again", mark), 20,
                "the recovery line")
        self.assert_exactly_once(tickets)
        self.assertEqual(st.stop_daemon(), 0)


class MapFullTest(DiskCase):
    """A 1 MiB map that the work outgrows: the store grows it."""

    def test_map_grows_and_nothing_is_lost(self):
        self.stack = Stack(self, map_size=1)
        self.stack.start()
        st = self.stack
        size0, _ = lmdb_map(st.state)
        self.assertEqual(size0, 1 << 20)
        out = st.snow.control.ok("POST", "/sim/tickets", {
            "table": "incident", "count": 150, "caller": "abel.tuter",
            "fields": {"category": "password_reset", "short_description": "x" * 3000}})
        tickets = out["tickets"]
        st.wait(lambda: all(self.link_written(t) for t in tickets), 120,
                "every ticket's link")
        size, used = lmdb_map(st.state)
        print("map: %d -> %d bytes, %d used" % (size0, size, used), file=sys.stderr)
        self.assertGreater(size, size0)
        self.assertGreater(used, size0)
        rows = st.ctl_json("list", "--json", "--limit", "1000")
        self.assertEqual(len({r["ticket"] for r in rows}), 150)
        self.assertEqual(self.lines(r"cannot write the state store"), [])
        self.assert_exactly_once(tickets[:10])
        self.assertEqual(st.stop_daemon(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
