#!/usr/bin/env python3
"""Black-box tests of the imperai-snowd binary: configuration check, start,
reload, bad reload, stop.  Readiness is observed the way systemd observes
it, through $NOTIFY_SOCKET, so no test sleeps to synchronise."""
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

TOP_SRC = os.environ.get("top_srcdir", os.path.join(os.path.dirname(__file__), "..", ".."))
TOP_BUILD = os.environ.get("top_builddir", TOP_SRC)
DAEMON = os.path.join(TOP_BUILD, "imperai-snowd")
EX_CONFIG = 78
# make valgrind runs the daemon under a wrapper, and stretches the waits.
WRAPPER = shlex.split(os.environ.get("IMPERAI_DAEMON_WRAPPER", ""))
SCALE = float(os.environ.get("IMPERAI_TEST_TIMEOUT_SCALE") or 1)

GOOD_CONF = """
servicenow: {
  instance = "http://127.0.0.1:%(snow_port)d";
  auth = "basic";
  user = "imperai.integration";
  password_file = "snow-password";
  tables = ( { name = "incident"; } );
  poll_interval = 1;
};
imperai: {
  api_url = "http://127.0.0.1:%(imperai_port)d";
  api_key_file = "imperai-key";
  poll_interval = 1;
};
state: { directory = "state"; };
flows_file = "flows.yaml";
log_level = "%(level)s";
"""

FLOWS = """
flows:
  - name: password-reset
    match: { table: incident, categories: [password_reset] }
    action: password_reset
"""


def free_port():
    """A loopback port with nothing listening: polls fail, the daemon lives on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Notify:
    """The receiving end of sd_notify, as systemd has it."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.path = path

    def expect(self, word, timeout=20.0):
        deadline = time.monotonic() + timeout * SCALE
        seen = []
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            seen.append(msg)
            if word in msg.split("\n"):
                return msg
        raise AssertionError("no %s from the daemon within %ss; got %r" % (word, timeout, seen))

    def close(self):
        self.sock.close()


class DaemonTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        for name, secret in (("snow-password", "s3cret-pass"), ("imperai-key", "k3y-xyz")):
            path = os.path.join(self.dir, name)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(secret + "\n")
        with open(os.path.join(self.dir, "flows.yaml"), "w") as f:
            f.write(FLOWS)
        self.conf = os.path.join(self.dir, "imperai-snowd.conf")
        self.write_conf()
        self.proc = None
        self.notify = None

    def tearDown(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.notify:
            self.notify.close()
        self.tmp.cleanup()

    def write_conf(self, text=None, level="info"):
        if text is None:
            text = GOOD_CONF % {"snow_port": free_port(), "imperai_port": free_port(),
                                "level": level}
        with open(self.conf, "w") as f:
            f.write(text)

    def run_check(self):
        return subprocess.run([DAEMON, "-n", "-c", self.conf], capture_output=True,
                              text=True, timeout=30)

    def start(self):
        sock = os.path.join(self.dir, "notify.sock")
        self.notify = Notify(sock)
        env = dict(os.environ, NOTIFY_SOCKET=sock)
        self.proc = subprocess.Popen(WRAPPER + [DAEMON, "-f", "-c", self.conf], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.notify.expect("READY=1")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.notify.expect("STOPPING=1")
        out, err = self.proc.communicate(timeout=5 * SCALE)
        return self.proc.returncode, err

    def test_check_accepts_a_good_file(self):
        r = self.run_check()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "configuration OK")

    def test_check_with_a_missing_secret_says_it_cannot_start_and_strict_fails(self):
        os.unlink(os.path.join(self.dir, "imperai-key"))
        r = self.run_check()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "configuration OK, but imperai-snowd cannot start: "
                         "1 secret is missing (above)")
        self.assertIn("imperai.api_key_file", r.stderr)
        r = subprocess.run([DAEMON, "-n", "--strict", "-c", self.conf], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, EX_CONFIG, r.stdout + r.stderr)
        self.assertIn("cannot start", r.stdout)

    def test_help_and_strict_without_n(self):
        for flag in ("-h", "--help"):
            r = subprocess.run([DAEMON, flag], capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0)
            self.assertIn("--strict", r.stdout)
        r = subprocess.run([DAEMON, "--strict"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 64)

    def test_the_shipped_settings_are_refused_until_configured(self):
        conf = os.path.join(TOP_SRC, "etc", "imperai-snowd.conf")
        env = dict(os.environ)
        env.pop("CREDENTIALS_DIRECTORY", None)
        r = subprocess.run([DAEMON, "-n", "-c", conf], capture_output=True, text=True,
                           env=env, timeout=30)
        self.assertEqual(r.returncode, EX_CONFIG, r.stdout + r.stderr)
        self.assertRegex(r.stderr, r"imperai-snowd\.conf:\d+: servicenow\.instance: "
                         r"\"https://YOUR-INSTANCE\.service-now\.com\" is a placeholder")
        self.assertIn("imperai.api_url", r.stderr)
        # Filled in as the demo does it, with the shipped policy next to it.
        filled = os.path.join(self.dir, "shipped.conf")
        with open(filled, "w") as f:
            subprocess.run(["sh", os.path.join(TOP_SRC, "tests", "settings-from-shipped.sh"),
                            conf, "http://127.0.0.1:1", "http://127.0.0.1:2",
                            os.path.join(self.dir, "state")], stdout=f, check=True, timeout=30)
        with open(os.path.join(TOP_SRC, "etc", "flows.yaml")) as src, \
                open(os.path.join(self.dir, "flows.yaml"), "w") as dst:
            dst.write(src.read())
        r = subprocess.run([DAEMON, "-n", "-c", filled], capture_output=True, text=True,
                           env=env, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configuration OK", r.stdout)

    def test_bad_config_exits_78_naming_file_and_line(self):
        text = GOOD_CONF % {"snow_port": 1, "imperai_port": 2, "level": "info"}
        text = text.replace('poll_interval = 1;\n};\nimperai', 'poll_interval = 1;\n  bogus_key = 3;\n};\nimperai', 1)
        self.write_conf(text)
        line = [i + 1 for i, l in enumerate(text.split("\n")) if "bogus_key" in l][0]
        r = self.run_check()
        self.assertEqual(r.returncode, EX_CONFIG)
        self.assertIn("imperai-snowd.conf:%d" % line, r.stderr)
        self.assertIn("bogus_key", r.stderr)
        # The daemon proper refuses the same file the same way.
        p = subprocess.run([DAEMON, "-f", "-c", self.conf], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, EX_CONFIG)
        self.assertIn("imperai-snowd.conf:%d" % line, p.stderr)

    def test_syntax_error_names_the_line(self):
        self.write_conf('servicenow: {\n  instance = "http://127.0.0.1:1"\n  auth = ;\n};\n')
        r = self.run_check()
        self.assertEqual(r.returncode, EX_CONFIG)
        self.assertRegex(r.stderr, r"imperai-snowd\.conf:\d+: syntax error: libconfig expects "
                         r"name = value; with strings in double quotes")

    def test_bad_policy_exits_78_naming_line_and_column(self):
        with open(os.path.join(self.dir, "flows.yaml"), "w") as f:
            f.write("flows:\n  - name: x\n    match: { table: incident, categories: [a] }\n    acton: none\n")
        r = self.run_check()
        self.assertEqual(r.returncode, EX_CONFIG)
        self.assertRegex(r.stderr, r"flows\.yaml:4:\d+")

    def test_loose_secret_permissions_are_refused_with_the_fix(self):
        os.chmod(os.path.join(self.dir, "snow-password"), 0o644)
        r = self.run_check()
        self.assertEqual(r.returncode, EX_CONFIG)
        self.assertIn("chmod 600", r.stderr)
        self.assertNotIn("s3cret-pass", r.stderr + r.stdout)

    def test_starts_reloads_and_stops_on_sigterm(self):
        self.start()
        self.proc.send_signal(signal.SIGHUP)
        self.notify.expect("RELOADING=1")
        self.notify.expect("READY=1")
        code, err = self.stop()
        self.assertEqual(code, 0, err)
        self.assertIn("reloaded", err)
        self.assertNotIn("s3cret-pass", err)
        self.assertNotIn("k3y-xyz", err)

    def test_a_notify_socket_nobody_reads_does_not_stall_the_daemon(self):
        # Past READY=1 nothing reads the socket: its queue (10 datagrams)
        # fills with RELOADING/READY pairs; the daemon must go on reloading,
        # and stop, rather than block in sendto (it did, for good).
        sock = os.path.join(self.dir, "notify.sock")
        self.notify = Notify(sock)
        err_path = os.path.join(self.dir, "stderr")
        with open(err_path, "w") as err:
            self.proc = subprocess.Popen(WRAPPER + [DAEMON, "-f", "-c", self.conf],
                                         env=dict(os.environ, NOTIFY_SOCKET=sock),
                                         stdout=subprocess.DEVNULL, stderr=err)
        self.notify.expect("READY=1")

        def reloads():
            with open(err_path) as f:
                return f.read().count(" reloaded ")
        for i in range(1, 9):
            self.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10 * SCALE
            while reloads() < i and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(reloads(), i, "reload %d did not happen" % i)
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=10 * SCALE), 0)

    def test_bad_reload_keeps_running_with_the_old_settings(self):
        self.start()
        with open(self.conf, "a") as f:
            f.write("\nnot_a_key = 1;\n")
        self.proc.send_signal(signal.SIGHUP)
        self.notify.expect("RELOADING=1")
        self.notify.expect("READY=1")
        self.assertIsNone(self.proc.poll(), "the daemon died on a bad reload")
        code, err = self.stop()
        self.assertEqual(code, 0, err)
        self.assertIn("reload failed", err)
        self.assertIn("not_a_key", err)

    @unittest.skipIf(WRAPPER, "a wall-clock bound means nothing under a wrapper (valgrind)")
    def test_stops_within_five_seconds_while_requests_hang(self):
        # A server that accepts and never answers: requests stay in flight.
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        port = srv.getsockname()[1]
        text = GOOD_CONF % {"snow_port": port, "imperai_port": port, "level": "info"}
        self.write_conf(text)
        try:
            self.start()
            srv.settimeout(10)
            conn, _ = srv.accept()  # a request is in flight now
            t0 = time.monotonic()
            code, err = self.stop()
            self.assertLess(time.monotonic() - t0, 5.0)
            self.assertEqual(code, 0, err)
            conn.close()
        finally:
            srv.close()

    def test_second_daemon_on_the_same_state_is_refused(self):
        self.start()
        p = subprocess.run([DAEMON, "-f", "-c", self.conf], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 75, p.stderr)  # EX_TEMPFAIL
        self.assertIn("state", p.stderr)
        self.stop()



class DetachTest(unittest.TestCase):
    """Started without -f and outside systemd: the daemon detaches, and the
    command that started it says whether it runs."""
    setUp = DaemonTest.setUp
    tearDown = DaemonTest.tearDown
    write_conf = DaemonTest.write_conf

    def run_detached(self, conf="imperai-snowd.conf"):
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
        return subprocess.run(WRAPPER + [DAEMON, "-c", conf], cwd=self.dir, env=env,
                              capture_output=True, text=True, timeout=60 * SCALE)

    def daemon_pid(self):
        with open(os.path.join(self.dir, "state", "lock")) as f:
            return int(f.read())

    def stop_pid(self, pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10 * SCALE
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    if f.read().split(") ", 1)[1].startswith("Z"):
                        return
            except FileNotFoundError:
                return
            time.sleep(0.05)
        self.fail("the detached daemon (pid %d) did not stop" % pid)

    def test_a_relative_settings_path_runs_and_exits_0_once_ready(self):
        r = self.run_detached()
        self.assertEqual(r.returncode, 0, r.stderr)
        pid = self.daemon_pid()
        self.addCleanup(lambda: self.stop_pid(pid))
        self.assertEqual(os.readlink("/proc/%d/cwd" % pid), "/")
        # Running, with its lock: a second detached start fails loudly.
        again = self.run_detached()
        self.assertEqual(again.returncode, 75, again.stderr)
        self.assertIn("in use by another imperai-snowd (pid %d)" % pid, again.stderr)

    def test_bad_settings_fail_before_the_fork_with_the_message(self):
        with open(self.conf, "a") as f:
            f.write("bogus_key = 1;\n")
        r = self.run_detached()
        self.assertEqual(r.returncode, EX_CONFIG, r.stderr)
        self.assertIn("imperai-snowd.conf:", r.stderr)
        self.assertIn("bogus_key", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "state")))

    def test_a_missing_settings_file_fails_with_the_message(self):
        r = self.run_detached("nonexistent.conf")
        self.assertEqual(r.returncode, EX_CONFIG, r.stderr)
        self.assertIn("nonexistent.conf: cannot read: No such file or directory", r.stderr)



class QuietOutageTest(unittest.TestCase):
    """Both services fail for a while (scripted 503s): one warning each when
    they go down, none per failed poll, one notice each when they are back."""

    def test_an_outage_says_one_warning_and_one_notice_per_service(self):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import harness
        if not os.path.exists(harness.IMPERAI_SIM):
            self.skipTest("no simulators")
        st = harness.Stack(self).start()
        st.wait(lambda: any("poll cycle done" in x for x in st.daemon.lines_since(0)), 20,
                "a first good poll")
        mark = st.daemon.log_size()
        fail = [{"status": 503, "body": "{}"}] * 12
        st.snow.scripted("GET", "/api/now/table/incident", fail)
        st.imperai.scripted("GET", "/v1/verification-requests/changes", fail)
        back = ("ServiceNow poll working again", "imper.ai change feed working again")
        lines = st.wait(lambda: (lambda ls: ls if all(any(b in x for x in ls) for b in back)
                                 else None)(st.daemon.lines_since(mark)), 60,
                        "both services back after the scripted outage")
        failed = [x for x in lines if " debug " in x and "failed: will retry" in x]
        warnings = [x for x in lines if " warning " in x]
        self.assertGreaterEqual(len(failed), 4, "several polls failed: %s" % lines)
        self.assertEqual(len(warnings), 2, warnings)
        self.assertTrue(any("ServiceNow poll failing" in x and "table=incident" in x and
                            "since=" in x and "check=" in x for x in warnings), warnings)
        self.assertTrue(any("imper.ai change feed failing" in x for x in warnings), warnings)
        for b in back:
            notice = [x for x in lines if b in x][0]
            self.assertRegex(notice, r" notice .*down_for=\d+s failures=\d+")


if __name__ == "__main__":
    unittest.main(verbosity=2)
