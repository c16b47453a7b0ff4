#!/usr/bin/env python3
"""Tests of the test harness itself (tests/integration/harness.py)."""
import os
import shutil
import socket
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class NotifySocketTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="imperai-snow-harness.")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.daemon = harness.Daemon(self.dir, os.path.join(self.dir, "none.conf"))
        self.addCleanup(self.daemon.stop)

    def test_the_notify_socket_is_drained_so_a_long_run_never_blocks_sd_notify(self):
        path = self.daemon.listen()
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        sender.setblocking(True)
        sender.settimeout(5)
        # Far beyond net.unix.max_dgram_qlen (10): a socket nobody reads
        # makes these block, then time out.
        for i in range(200):
            sender.sendto(b"STATUS=step %d" % i, path)
        sender.sendto(b"READY=1", path)
        msg = self.daemon.expect("READY=1", timeout=10)
        self.assertEqual(msg, "READY=1")


if __name__ == "__main__":
    unittest.main()
