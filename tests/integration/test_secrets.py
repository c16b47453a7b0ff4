#!/usr/bin/env python3
"""Secrets and privilege (issue #7, item 6).

- The ServiceNow password, the OAuth client secret and tokens (auth=oauth
  against the simulator's /oauth_token.do, with a refresh) and the imper.ai
  API key never appear in the daemon's log at debug level, in
  imperai-snowctl's output, in work notes or the field, or in the LMDB
  files' bytes.  The tokens the daemon used are read from the requests the
  simulator recorded (/sim/script with pass answers).
- TLS: against a loopback server whose certificate comes from a CA made
  here with openssl, the daemon refuses the connection (logs a TLS error,
  writes nothing) until servicenow.ca_file names that CA.
- Secret files readable by others are refused.
- The unit's hardening: systemd-analyze security --offline=true scores the
  generated unit at 2.0 or lower."""
import base64
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (DAEMON, IMPERAI_KEY, OAUTH_CLIENT_SECRET, SNOW_PASSWORD, SNOW_USER,  # noqa: E402
                     TOP_BUILD, Stack, make_ca_and_cert)


def leaks(text, secrets):
    """The secrets found in text (str or bytes), by name."""
    if isinstance(text, str):
        text = text.encode(errors="replace")
    return sorted(name for name, value in secrets.items() if value.encode() in text)


class OAuthSecretsTest(unittest.TestCase):
    """A full flow with auth=oauth, a token refresh and log_level debug."""

    def test_no_secret_anywhere(self):
        st = Stack(self, auth="oauth")
        st.start_sims()
        # Record every request the daemon makes to ServiceNow, answered as usual.
        st.snow.scripted("", "/oauth_token.do", [{"pass": True}] * 50)
        st.snow.scripted("", path_prefix="/api/", answers=[{"pass": True}] * 100000)
        st.write_config().start_daemon()
        snow, imp = st.snow, st.imperai
        t = snow.create_ticket(category="password_reset")
        v = st.wait_verification(t["number"])
        # Past the access token's life: the daemon refreshes it.
        snow.control.ok("POST", "/sim/clock", {"advance": 3600})
        imp.act(v["id"], "send", recipient="abel@example.org", agent="Ivy")
        imp.act(v["id"], "complete", outcome="passed", risk_score=1)
        imp.act(v["id"], "action", status="completed", automated=True)
        st.wait_status(t["number"], "passed")
        st.wait(lambda: any("Passed" in w["fields"].get("u_imperai_verification", "")
                            for w in snow.writes("incident", t["sys_id"])), 20, "the outcome")
        seen = snow.scripted_state()["seen"]
        grants = [dict(urllib.parse.parse_qsl(s["body"])) for s in seen
                  if s["target"].startswith("/oauth_token.do")]
        self.assertIn("password", [g.get("grant_type") for g in grants])
        self.assertIn("refresh_token", [g.get("grant_type") for g in grants],
                      "no token refresh happened")
        bearers = {h[1].split(" ", 1)[1] for s in seen for h in s["headers"]
                   if h[0].lower() == "authorization" and h[1].startswith("Bearer ")}
        self.assertGreaterEqual(len(bearers), 2, "expected a token before and after the refresh")
        secrets = {"servicenow password": SNOW_PASSWORD, "client secret": OAUTH_CLIENT_SECRET,
                   "imper.ai key": IMPERAI_KEY,
                   "basic auth": base64.b64encode(("%s:%s" % (SNOW_USER, SNOW_PASSWORD))
                                                  .encode()).decode()}
        for i, b in enumerate(sorted(bearers)):
            secrets["access token %d" % i] = b
        for g in grants:
            if g.get("refresh_token"):
                secrets["refresh token"] = g["refresh_token"]
        self.assertIn("refresh token", secrets)
        print("secrets looked for: %s" % ", ".join(sorted(secrets)), file=sys.stderr)

        outputs = {}
        for args in (["status"], ["status", "--json"], ["list"], ["list", "--json"],
                     ["list", "--csv"], ["show", t["number"]], ["show", "--json", t["number"]],
                     ["audit", "export"], ["check-config"]):
            r = st.ctl(*args)
            outputs["imperai-snowctl " + " ".join(args)] = r.stdout + r.stderr
        for where, text in outputs.items():
            self.assertEqual(leaks(text, secrets), [], where)
        journal = snow.journal("incident", t["sys_id"])
        self.assertTrue(journal)
        self.assertEqual(leaks(repr(journal), secrets), [], "work notes")
        field = snow.ticket("incident", t["sys_id"])["u_imperai_verification"]
        self.assertEqual(leaks(field, secrets), [], "the field")
        self.assertEqual(leaks(repr(imp.verifications()), {k: v for k, v in secrets.items()
                                                          if k != "imper.ai key"}), [],
                         "what imper.ai was sent")
        self.assertEqual(st.stop_daemon(), 0)
        with open(st.daemon.log_path, "rb") as f:
            log = f.read()
        self.assertIn(b" debug ", log)
        self.assertEqual(leaks(log, secrets), [], "the daemon's log")
        for name in os.listdir(st.state):
            with open(os.path.join(st.state, name), "rb") as f:
                self.assertEqual(leaks(f.read(), secrets), [], "state file " + name)


class TlsProxy:
    """TLS on 127.0.0.1 in front of a plain loopback server."""

    def __init__(self, certfile, keyfile, backend_port):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certfile, keyfile)
        self.backend = backend_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.handshake_errors = 0
        self.stopped = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshake_errors += 1
            conn.close()
            return
        back = socket.create_connection(("127.0.0.1", self.backend))
        threading.Thread(target=self.pump, args=(back, tls), daemon=True).start()
        self.pump(tls, back)

    @staticmethod
    def pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.stopped = True
        self.sock.close()


class TlsTest(unittest.TestCase):
    def setUp(self):
        if shutil.which("openssl") is None:
            self.skipTest("openssl is not installed")
        self.certs = tempfile.mkdtemp(prefix="imperai-snow-tls.")
        self.addCleanup(shutil.rmtree, self.certs, True)
        self.ca, self.cert, self.key = make_ca_and_cert(self.certs)

    def stack(self, ca_file):
        st = Stack(self, snow_extra='  ca_file = "%s";\n' % ca_file if ca_file else "")
        st.start_sims()
        proxy = TlsProxy(self.cert, self.key, st.snow.port)
        self.addCleanup(proxy.close)
        st.snow_url = "https://127.0.0.1:%d" % proxy.port
        st.write_config().start_daemon()
        return st, proxy

    def test_unknown_ca_is_refused_and_nothing_written(self):
        st, proxy = self.stack(None)
        t = st.snow.create_ticket(category="password_reset")
        line = st.wait(lambda: [x for x in st.daemon.lines_since(0)
                                if re.search(r"ServiceNow poll failed.*table=incident.*"
                                             r"(TLS|certificate|SSL)", x)], 20,
                       "a TLS error in the log")[0]
        print(line, file=sys.stderr)
        # It names the setting that fixes it, as the settings file spells it.
        self.assertIn("servicenow.ca_file", line)
        self.assertGreaterEqual(proxy.handshake_errors, 1)
        self.assertTrue(st.daemon.running())
        self.assertIsNone(st.imperai.verification_for(t["number"]))
        self.assertEqual([w for w in st.snow.writes() if w["method"] == "PATCH"], [])

    def test_configured_ca_is_trusted(self):
        st, proxy = self.stack(self.ca)
        t = st.snow.create_ticket(category="password_reset")
        st.wait_verification(t["number"])
        st.wait(lambda: any("u_imperai_verification" in w["fields"]
                            for w in st.snow.writes("incident", t["sys_id"])), 20,
                "the link written through TLS")
        self.assertEqual(proxy.handshake_errors, 0)
        self.assertEqual([x for x in st.daemon.lines_since(0) if "poll failed" in x], [])


class SecretFilesTest(unittest.TestCase):
    """Credentials readable by group or others are refused, naming the fix."""

    def test_loose_permissions_are_refused(self):
        st = Stack(self)
        st.start_sims().write_config()
        for name, mode in (("imperai-api-key", 0o644), ("servicenow-password", 0o640),
                           ("imperai-api-key", 0o604)):
            path = os.path.join(st.creds, name)
            os.chmod(path, mode)
            r = subprocess.run([DAEMON, "-n", "-c", st.conf], capture_output=True, text=True,
                               env=st.env(), timeout=30)
            self.assertEqual(r.returncode, 78, (name, oct(mode), r.stderr))
            self.assertIn(name, r.stderr)
            self.assertIn("chmod 600", r.stderr)
            self.assertEqual(leaks(r.stdout + r.stderr, {"p": SNOW_PASSWORD, "k": IMPERAI_KEY}),
                             [])
            os.chmod(path, 0o600)
        r = subprocess.run([DAEMON, "-n", "-c", st.conf], capture_output=True, text=True,
                           env=st.env(), timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)


class HardeningTest(unittest.TestCase):
    def test_unit_exposure_is_at_most_2(self):
        tool = shutil.which("systemd-analyze")
        unit = os.path.join(TOP_BUILD, "systemd", "imperai-snowd.service")
        if tool is None:
            self.skipTest("systemd-analyze is not installed")
        if not os.path.exists(unit):
            self.skipTest("%s is not built" % unit)
        r = subprocess.run([tool, "security", "--offline=true", "--no-pager", unit],
                           capture_output=True, text=True, timeout=120)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\S+)", r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        print("systemd-analyze security: exposure %s %s" % (m.group(1), m.group(2)),
              file=sys.stderr)
        self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
