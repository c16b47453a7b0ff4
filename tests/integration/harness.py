"""Shared helpers for the black-box tests: the two simulators, the daemon
and the CLI, each started in a temporary directory and stopped for sure.

    from harness import Stack, wait_until

    class MyTest(unittest.TestCase):
        def setUp(self):
            self.stack = Stack(self)            # temp dir, cleanup registered
            self.stack.start()                  # simulators, config, daemon
            t = self.stack.snow.create_ticket(category="password_reset")
            v = self.stack.wait_verification(t["number"])
            self.stack.imperai.act(v["id"], "send", recipient="abel@example.org", agent="Ivy")

Waiting is always for a condition (wait_until polls every 50 ms with a
deadline and fails naming what it waited for), never a bare sleep.

Paths: the binaries come from $top_builddir (set by `make check`; else
_build/check, _build or . under the source tree, the first that has them),
the simulators from $top_srcdir/tests/sim.  Standard library only.
"""
import json
import os
import queue
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import ssl
import urllib.request
from base64 import b64encode

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRC = os.path.abspath(os.environ.get("top_srcdir", os.path.join(HERE, "..", "..")))


def _find_builddir():
    if os.environ.get("top_builddir"):
        return os.path.abspath(os.environ["top_builddir"])
    for d in ("_build/check", "_build", "."):
        if os.path.exists(os.path.join(TOP_SRC, d, "imperai-snowctl")):
            return os.path.join(TOP_SRC, d)
    return TOP_SRC


TOP_BUILD = _find_builddir()
DAEMON = os.path.join(TOP_BUILD, "imperai-snowd")
CTL = os.path.join(TOP_BUILD, "imperai-snowctl")
AUDIT_TAMPER = os.path.join(TOP_BUILD, "tests", "integration", "audit_tamper")
SNOW_SIM = os.path.join(TOP_SRC, "tests", "sim", "snow_sim.py")
IMPERAI_SIM = os.path.join(TOP_SRC, "tests", "sim", "imperai_sim.py")
sys.path.insert(0, os.path.join(TOP_SRC, "tests", "sim"))
from testca import make_ca_and_cert  # noqa: E402,F401 - re-exported for the tests

# The ServiceNow simulator's seeded integration user (tests/sim/README.md).
SNOW_USER = "imperai.integration"
SNOW_PASSWORD = "integration-secret"
# A key distinctive enough that finding it in any output is a leak.
IMPERAI_KEY = "k3y-7a1f-imperai-sim-SECRET"

EX_OK, EX_USAGE, EX_UNAVAILABLE, EX_CONFIG = 0, 64, 69, 78

# Every wait is this many times longer (make valgrind sets it: the daemon
# runs 20-50 times slower under valgrind).  It stretches deadlines only:
# no test gets slower for it.
TIMEOUT_SCALE = float(os.environ.get("IMPERAI_TEST_TIMEOUT_SCALE") or 1)


def wait_until(pred, timeout=20.0, what="the condition", interval=0.05, detail=None):
    """Polls pred() every interval seconds until it returns something true,
    and returns that.  After timeout seconds fails with an AssertionError
    naming what it waited for (plus detail(), e.g. the daemon's log, and
    the last exception pred raised, if any)."""
    timeout *= TIMEOUT_SCALE
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except Exception as e:  # the condition may not be observable yet
            last_exc = e
        if time.monotonic() >= deadline:
            msg = "waited %.1f s for %s" % (timeout, what)
            if last_exc is not None:
                msg += "; last error: %r" % (last_exc,)
            if detail is not None:
                msg += "\n" + detail()
            raise AssertionError(msg)
        time.sleep(interval)


def write_secret(path, value):
    """A credential file as the daemon accepts it: mode 0600 from the start."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def stop_process(proc, grace=5.0):
    """SIGTERM, then SIGKILL after grace seconds.  Returns the exit status."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    grace *= TIMEOUT_SCALE
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


class Http:
    """A tiny JSON client (urllib), optionally with Basic auth; an https
    base is verified against ca_file."""

    def __init__(self, base, user=None, password=None, ca_file=None):
        self.base = base.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self.auth = None
        if user is not None:
            self.auth = "Basic " + b64encode(("%s:%s" % (user, password)).encode()).decode()

    def call(self, method, path, body=None, timeout=10):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.auth:
            req.add_header("Authorization", self.auth)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ctx) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def ok(self, method, path, body=None):
        status, answer = self.call(method, path, body)
        if status >= 300:
            raise AssertionError("%s %s%s: %s %s" % (method, self.base, path, status, answer))
        return answer


class Sim:
    """A simulator process: `python3 SCRIPT --port 0 --data DIR ...`, whose
    first stdout line is `NAME listening on http://127.0.0.1:PORT`.  With
    tls = (ca.pem, server.pem, server.key) it serves HTTPS with that
    certificate and its control API is verified against that CA."""

    name = "sim"
    script = None

    def __init__(self, workdir, args=(), tls=None):
        self.dir = os.path.join(workdir, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.log_path = os.path.join(workdir, self.name + ".log")
        self.args = list(args)
        self.tls = tls
        self.ca_file = tls[0] if tls else None
        self.proc = None
        self.url = None

    def start(self, timeout=15.0):
        log = open(self.log_path, "ab")
        tls = ["--tls", "--tls-cert", self.tls[1], "--tls-key", self.tls[2]] if self.tls else []
        self.proc = subprocess.Popen(
            [sys.executable, self.script, "--port", "0", "--data", os.path.join(self.dir, "data")]
            + self.args + tls, stdout=subprocess.PIPE, stderr=log, cwd=self.dir)
        log.close()
        line = self._first_line(timeout)
        prefix = "%s listening on " % self.name
        if not line.startswith(prefix):
            raise AssertionError("%s did not start: %r\n%s" % (self.name, line, self.log()))
        self.url = line[len(prefix):].strip()
        self.control = Http(self.url, ca_file=self.ca_file)
        return self

    def _first_line(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError("%s printed nothing within %s s\n%s" % (self.name, timeout,
                                                                       self.log()))
        return self.proc.stdout.readline().decode(errors="replace")

    @property
    def port(self):
        return int(self.url.rsplit(":", 1)[1])

    def log(self, tail=60):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-tail:])
        except OSError:
            return ""

    def stop(self):
        stop_process(self.proc)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    def scripted(self, method, path=None, answers=(), path_prefix=None):
        """Raw answers for the next requests matching method and path
        (/sim/script); returns the simulator's script state."""
        rule = {"method": method, "answers": list(answers)}
        rule["path" if path is not None else "path_prefix"] = path if path is not None \
            else path_prefix
        return self.control.ok("POST", "/sim/script", rule)

    def scripted_state(self):
        return self.control.ok("GET", "/sim/script")

    def scripted_clear(self):
        return self.control.ok("POST", "/sim/script", {"clear": True})


class SnowSim(Sim):
    name = "snow_sim"
    script = SNOW_SIM

    def __init__(self, workdir, no_verification_field=False, args=(), tls=None):
        extra = ["--no-fsync"] + (["--no-verification-field"] if no_verification_field else [])
        super().__init__(workdir, extra + list(args), tls)

    def start(self, timeout=15.0):
        super().start(timeout)
        self.admin = Http(self.url, "admin", "admin", self.ca_file)
        return self

    def create_ticket(self, table="incident", caller="abel.tuter", **fields):
        """POSTs a ticket through the Table API as admin; returns the record."""
        body = dict(fields)
        body.setdefault("short_description", "Please reset my password")
        body["caller_id" if table == "incident" else "requested_for"] = caller
        rec = self.admin.ok("POST", "/api/now/table/%s?sysparm_exclude_reference_link=true"
                            % table, body)["result"]
        return rec

    def ticket(self, table, sys_id):
        return self.admin.ok("GET", "/api/now/table/%s/%s?sysparm_exclude_reference_link=true"
                             % (table, sys_id))["result"]

    def patch(self, table, sys_id, **fields):
        return self.admin.ok("PATCH", "/api/now/table/%s/%s" % (table, sys_id), fields)["result"]

    def writes(self, table=None, sys_id=None):
        """Every write the simulator applied (/sim/writes), oldest first."""
        q = "&".join("%s=%s" % kv for kv in (("table", table), ("sys_id", sys_id)) if kv[1])
        return self.control.ok("GET", "/sim/writes" + ("?" + q if q else ""))

    def journal(self, table, sys_id):
        return self.control.ok("GET", "/sim/journal?table=%s&sys_id=%s" % (table, sys_id))


class ImperaiSim(Sim):
    name = "imperai_sim"
    script = IMPERAI_SIM

    def __init__(self, workdir, api_key=IMPERAI_KEY, daily_cap=0, args=(), tls=None):
        super().__init__(workdir, ["--api-key", api_key, "--daily-cap", str(daily_cap)]
                         + list(args), tls)

    def verifications(self):
        return self.control.ok("GET", "/sim/dump")["verifications"]

    def verification_for(self, number):
        """The newest request imper.ai holds for ticket number, or None."""
        found = [v for v in self.verifications() if v["ticket"]["number"] == number]
        return found[-1] if found else None

    def act(self, vid, do, **kw):
        body = dict(kw, id=vid, do=do)
        return self.control.ok("POST", "/sim/act", body)


# The settings of every Stack are the shipped etc/imperai-snowd.conf, its
# placeholders filled in by tests/settings-from-shipped.sh (as the demo does),
# with the test's own values put in place of the shipped ones: the shipped
# file is what the integration tests run on.
SHIPPED_CONF = os.path.join(TOP_SRC, "etc", "imperai-snowd.conf")
SETTINGS_FROM_SHIPPED = os.path.join(TOP_SRC, "tests", "settings-from-shipped.sh")

CONF = """servicenow: {
  instance = "%(snow_url)s";
%(snow_auth)s
  tables = ( %(tables)s );
  poll_interval = %(poll)d;
  poll_overlap = 2;
  write_settle = %(write_settle)d;
%(snow_http)s%(snow_extra)s};
imperai: {
  api_url = "%(imperai_url)s";
  api_key_credential = "imperai-api-key";
  poll_interval = %(poll)d;
  risk_bands = { verified_max = 3; medium_max = 6; };
%(imperai_http)s%(imperai_extra)s};
state: { directory = "%(state)s"; map_size = %(map_size)d; };
flows_file = "flows.yaml";
credentials_directory = "%(creds)s";
log_level = "%(log_level)s";
"""


def _split_settings(body):
    """'a = 1; b = "x;y";' -> [("a", "1"), ("b", '"x;y"')]: settings split
    at the semicolons outside quotes, brackets, braces and parentheses."""
    out, cur, depth, quoted = [], "", 0, False
    for i, ch in enumerate(body):
        if ch == '"' and (i == 0 or body[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch in "([{":
            depth += 1
        elif not quoted and ch in ")]}":
            depth -= 1
        if ch == ";" and not quoted and depth == 0:
            key, _, value = cur.partition("=")
            out.append((key.strip(), value.strip()))
            cur = ""
        else:
            cur += ch
    if cur.strip():
        raise ValueError("setting without ';': %r" % cur)
    return out


def _parse_overrides(text):
    """The harness's own settings text as [(group, key, value)]; group ""
    for the top level.  Groups are "name: { ... };", on one line or many."""
    out, group, body = [], None, ""
    for line in text.split("\n"):
        line = line.split("#", 1)[0].strip() if not line.strip().startswith("#") else ""
        if not line:
            continue
        if group is None and ": {" in line and "=" not in line.split(": {", 1)[0]:
            group, line = line.split(": {", 1)
            group, body = group.strip(), ""
            if line.strip().endswith("};"):      # the whole group on one line
                out += [(group, k, v) for k, v in _split_settings(line.strip()[:-2])]
                group = None
            else:
                body = line
            continue
        if group is None:
            out += [("", k, v) for k, v in _split_settings(line)]
        elif line == "};":
            out += [(group, k, v) for k, v in _split_settings(body)]
            group = None
        else:
            body += " " + line
    return out


def _balance(line):
    """Open brackets minus closed ones on a line, outside quotes and comments."""
    n, quoted = 0, False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "#":
            break
        elif not quoted and ch in "([{":
            n += 1
        elif not quoted and ch in ")]}":
            n -= 1
    return n


def _group_span(lines, group):
    """(first line inside, index of the closing "};") of a top-level group."""
    for i, line in enumerate(lines):
        if line.startswith(group + ": {"):
            for j in range(i + 1, len(lines)):
                if lines[j].startswith("};"):
                    return i + 1, j
    return None


def merge_settings(base, overrides):
    """base (libconfig text) with each (group, key, value) put in place of
    the shipped setting, or added to its group (a missing group is added)."""
    lines = base.split("\n")
    for group, key, value in overrides:
        span = _group_span(lines, group) if group else (0, len(lines))
        if span is None:
            lines += ["%s: {" % group, "};"]
            span = (len(lines) - 1, len(lines) - 1)
        first, end = span
        indent = "  " if group else ""
        for i in range(first, end):
            stripped = lines[i].lstrip()
            # Only settings of this group itself (depth 0 inside it).
            if (stripped.startswith(key + " ") or stripped.startswith(key + "=")) and \
                    len(lines[i]) - len(stripped) == len(indent):
                j, depth = i, _balance(lines[i])
                while depth > 0:
                    j += 1
                    depth += _balance(lines[j])
                lines[i:j + 1] = ["%s%s = %s;" % (indent, key, value)]
                break
        else:
            lines.insert(end, "%s%s = %s;" % (indent, key, value))
    return "\n".join(lines)


def settings_from_shipped(own_text, snow_url, imperai_url, state):
    """The shipped settings filled in, then own_text's settings applied."""
    r = subprocess.run(["sh", SETTINGS_FROM_SHIPPED, SHIPPED_CONF, snow_url, imperai_url, state],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("settings-from-shipped.sh: %s" % r.stderr)
    return ("# written by tests/integration/harness.py from etc/imperai-snowd.conf\n" +
            merge_settings(r.stdout, _parse_overrides(own_text)))


SNOW_BASIC = """  auth = "basic";
  user = "%s";
  password_credential = "servicenow-password";"""
# The simulator's seeded OAuth client, with the password grant.
SNOW_OAUTH = """  auth = "oauth";
  oauth_grant = "password";
  user = "%s";
  password_credential = "servicenow-password";
  client_id = "imperai-client";
  client_secret_credential = "servicenow-client-secret";"""
OAUTH_CLIENT_SECRET = "imperai-client-secret"

FLOWS = """flows:
  - name: password-reset
    match:
      table: incident
      categories: [%(categories)s]
    action: password_reset
    automated: false
    on_fail:
      work_note: "High risk detected - Reject this request"
    retry: { on: [], max: 0 }
"""

# The requester field of each table the simulator has.
REQUESTER_FIELD = {"incident": "caller_id", "sc_req_item": "requested_for"}


def tables_setting(tables):
    """The servicenow.tables list of the config for these table names."""
    return ", ".join('{ name = "%s"; field = "u_imperai_verification"; requester_field = "%s"; }'
                     % (t, REQUESTER_FIELD[t]) for t in tables)


# The shipped password-reset flow (etc/flows.yaml): a passed verification
# whose password reset completed resolves and closes the ticket.
FLOWS_AUTOMATED = """flows:
  - name: password-reset
    match:
      table: incident
      categories: [password_reset]
    action: password_reset
    automated: true
    close: true
    close_code: "Solution provided"
    close_notes: "Password reset by {requester} after imper.ai identity verification {verification_id} ({number})."
    max_age: 1h
    on_fail:
      assignment_group: "Service Desk Security"
      priority: 2
      work_note: "High risk detected - Reject this request"
"""


def daemon_wrapper():
    """$IMPERAI_DAEMON_WRAPPER split into words, put before the daemon's
    command (`make valgrind` sets it to a valgrind command line)."""
    return shlex.split(os.environ.get("IMPERAI_DAEMON_WRAPPER", ""))


def wrapped_timeout(t):
    """A start timeout that allows for a wrapper's slowness (valgrind)."""
    return t * max(TIMEOUT_SCALE, 10 if daemon_wrapper() else 1)


class Daemon:
    """imperai-snowd -f -c CONF with its credentials in CREDENTIALS_DIRECTORY;
    readiness and stop are observed through $NOTIFY_SOCKET, as systemd
    observes them.  stderr is kept in a file for failure messages."""

    def __init__(self, workdir, conf):
        self.dir = workdir
        self.conf = conf
        self.log_path = os.path.join(workdir, "imperai-snowd.log")
        self.proc = None
        self.notify = None

    def listen(self):
        """Binds $NOTIFY_SOCKET and reads it from a thread, as systemd
        does: a datagram socket nobody reads holds 10 messages
        (net.unix.max_dgram_qlen), after which the daemon's sd_notify()
        blocks -- its STATUS= every 5 s would stop it after a minute.
        Returns the socket's path."""
        sock_path = os.path.join(self.dir, "notify.sock")
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(sock_path)
        self.notify.settimeout(0.2)
        self.messages = queue.Queue()
        self._reader = threading.Thread(target=self._read_notify,
                                        args=(self.notify, self.messages), daemon=True)
        self._reader.start()
        return sock_path

    @staticmethod
    def _read_notify(sock, messages):
        while sock.fileno() >= 0:
            try:
                messages.put(sock.recv(4096).decode(errors="replace"))
            except socket.timeout:
                continue
            except OSError:  # closed by stop()
                return

    def start(self, env, timeout=20.0):
        sock_path = self.listen()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(daemon_wrapper() + [DAEMON, "-f", "-c", self.conf],
                                     stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log,
                                     env=dict(env, NOTIFY_SOCKET=sock_path))
        log.close()
        self.expect("READY=1", wrapped_timeout(timeout))

    def expect(self, word, timeout=20.0):
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.messages.get(timeout=min(0.2, max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                if self.proc is not None and self.proc.poll() is not None:
                    break
                continue
            seen.append(msg)
            if word in msg.split("\n"):
                return msg
        raise AssertionError("no %s from imperai-snowd within %s s (exit %s); got %r\n%s"
                             % (word, timeout, self.proc and self.proc.poll(), seen, self.log()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_size(self):
        """A mark: lines_since(mark) gives what the daemon logged after it."""
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def lines_since(self, mark=0):
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace").splitlines()

    def log(self, tail=80):
        try:
            with open(self.log_path, errors="replace") as f:
                return "--- imperai-snowd log (last %d lines) ---\n%s" % (
                    tail, "".join(f.readlines()[-tail:]))
        except OSError:
            return ""

    def stop(self):
        code = stop_process(self.proc)
        if self.notify:
            self.notify.close()
            self._reader.join()
            self.notify = None
        return code

    def kill(self):
        """SIGKILL: a crash, nothing is flushed.  Returns the exit status."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait() if self.proc is not None else None
        if self.notify:
            self.notify.close()
            self.notify = None
        return code


def http_settings(opts):
    """A group's HTTP settings as libconfig lines (timeout 10 and
    max_retries 1 unless given)."""
    opts = dict({"timeout": 10, "max_retries": 1}, **opts)
    return "".join("  %s = %s;\n" % (k, json.dumps(v)) for k, v in opts.items())


class Stack:
    """Both simulators, the daemon's settings and policy, the daemon, and
    the CLI, in one temporary directory removed at the end of the test."""

    def __init__(self, test=None, no_verification_field=False, categories=("password_reset",),
                 snow_password=SNOW_PASSWORD, imperai_key=IMPERAI_KEY, poll=1, extra_conf="",
                 flows=None, tables=("incident",), snow_args=(), imperai_args=(),
                 auth="basic", map_size=8, snow_extra="", snow_http=None, imperai_http=None,
                 imperai_extra="", log_level="debug", write_settle=1, tls=False):
        """extra_conf is appended to the settings file (e.g. a metrics
        group); flows: the text of flows.yaml, instead of the default one
        flow for `categories` (FLOWS, not automated); tables: the watched
        tables; *_args: extra simulator options (e.g. ["--verbose"]);
        auth "basic" or "oauth" (the simulator's OAuth client, password
        grant); map_size in MiB; snow_extra / imperai_extra: lines added to
        the servicenow / imperai group (ca_file, "concurrency = 8;");
        snow_http / imperai_http: that group's HTTP settings, e.g.
        {"timeout": 3, "request_budget": 500} (default timeout 10,
        max_retries 1); log_level: the daemon's (the benchmarks use "info");
        write_settle: seconds before an unanswered PATCH is read back (the
        simulators answer in milliseconds; the daemon's default is 60);
        tls: both simulators serve HTTPS with a certificate from a CA made
        here (self.ca_file), which both groups' ca_file name."""
        self.tmp = tempfile.mkdtemp(prefix="imperai-snow-test.")
        self.dir = self.tmp
        certs = make_ca_and_cert(os.path.join(self.dir, "tls")) if tls else None
        self.ca_file = certs[0] if certs else None
        if certs:
            snow_extra += '  ca_file = "%s";\n' % self.ca_file
            imperai_extra += '  ca_file = "%s";\n' % self.ca_file
        self.state = os.path.join(self.dir, "state")
        self.creds = os.path.join(self.dir, "credentials")
        self.conf = os.path.join(self.dir, "imperai-snowd.conf")
        self.snow = SnowSim(self.dir, no_verification_field, args=snow_args, tls=certs)
        self.imperai = ImperaiSim(self.dir, args=imperai_args, tls=certs)
        self.daemon = None
        self.categories = list(categories)
        self.snow_password = snow_password
        self.imperai_key = imperai_key
        self.poll = poll
        self.auth = auth
        self.map_size = map_size
        self.snow_extra = snow_extra
        self.write_settle = write_settle
        self.snow_url = None    # None: the simulator's own (a TLS proxy may stand in front)
        self.daemon_env = {}    # added to the daemon's environment only
        self.extra_conf = extra_conf
        self.log_level = log_level
        self.imperai_extra = imperai_extra
        self.flows = flows
        self.tables = list(tables)
        self.snow_http = dict(snow_http or {})
        self.imperai_http = dict(imperai_http or {})
        if test is not None:
            test.addCleanup(self.close)

    # -- life ------------------------------------------------------------------

    def start_sims(self):
        self.snow.start()
        self.imperai.start()
        return self

    def write_config(self):
        os.makedirs(self.creds, mode=0o700, exist_ok=True)
        write_secret(os.path.join(self.creds, "servicenow-password"), self.snow_password)
        write_secret(os.path.join(self.creds, "imperai-api-key"), self.imperai_key)
        auth = SNOW_BASIC % SNOW_USER
        if self.auth == "oauth":
            write_secret(os.path.join(self.creds, "servicenow-client-secret"),
                         OAUTH_CLIENT_SECRET)
            auth = SNOW_OAUTH % SNOW_USER
        own = CONF % {"snow_url": self.snow_url or self.snow.url, "snow_auth": auth,
                      "imperai_url": self.imperai.url, "poll": self.poll,
                      "state": self.state, "creds": self.creds,
                      "map_size": self.map_size, "snow_extra": self.snow_extra,
                      "write_settle": self.write_settle,
                      "tables": tables_setting(self.tables),
                      "imperai_extra": self.imperai_extra, "log_level": self.log_level,
                      "snow_http": http_settings(self.snow_http),
                      "imperai_http": http_settings(self.imperai_http)}
        with open(self.conf, "w") as f:
            f.write(settings_from_shipped(own + self.extra_conf, self.snow_url or self.snow.url,
                                          self.imperai.url, self.state))
        with open(os.path.join(self.dir, "flows.yaml"), "w") as f:
            f.write(self.flows if self.flows is not None else
                    FLOWS % {"categories": ", ".join(self.categories)})
        return self

    def env(self):
        env = dict(os.environ, CREDENTIALS_DIRECTORY=self.creds)
        for k in ("NO_COLOR", "TERM", "NOTIFY_SOCKET", "JOURNAL_STREAM"):
            env.pop(k, None)
        return env

    def start_daemon(self):
        self.daemon = Daemon(self.dir, self.conf)
        self.daemon.start(dict(self.env(), **self.daemon_env))
        return self

    def start(self):
        """Simulators, settings, daemon: ready to use."""
        return self.start_sims().write_config().start_daemon()

    def stop_daemon(self):
        return self.daemon.stop() if self.daemon else None

    def close(self):
        for part in (self.daemon, self.snow, self.imperai):
            if part is not None:
                try:
                    part.stop()
                except Exception:  # keep stopping the others
                    pass
        # A simulator's own error answers 500 "see its stderr": show it
        # before its directory goes.
        for sim in (self.snow, self.imperai):
            text = sim.log(200)
            if "Traceback" in text:
                sys.stderr.write("--- %s stderr (it raised) ---\n%s" % (sim.name, text))
        shutil.rmtree(self.tmp, ignore_errors=True)

    def logs(self):
        out = [self.daemon.log()] if self.daemon else []
        for sim in (self.snow, self.imperai):
            out.append("--- %s log ---\n%s" % (sim.name, sim.log(20)))
        return "\n".join(out)

    def wait(self, pred, timeout=20.0, what="the condition"):
        """wait_until that adds the daemon's and simulators' logs on failure."""
        return wait_until(pred, timeout, what, detail=self.logs)

    # -- the CLI -----------------------------------------------------------------

    def ctl(self, *args, config=True, env=None, timeout=60, raw=False):
        """Runs imperai-snowctl [-c CONF] ARGS; returns the CompletedProcess
        (text, or bytes with raw=True: CRLF line ends are kept then)."""
        argv = [CTL] + (["-c", self.conf] if config else []) + list(args)
        return subprocess.run(argv, capture_output=True, text=not raw, timeout=timeout,
                              env=env if env is not None else self.env())

    def ctl_json(self, *args):
        r = self.ctl(*args)
        if r.returncode not in (0, 2, 3):
            raise AssertionError("imperai-snowctl %s: exit %d\n%s" % (" ".join(args),
                                                                     r.returncode, r.stderr))
        return json.loads(r.stdout)

    # -- the flow ------------------------------------------------------------------

    def wait_verification(self, number, timeout=20.0):
        """The verification imper.ai holds for ticket number, once the daemon
        has registered it and recorded it in its store."""
        v = self.wait(lambda: self.imperai.verification_for(number), timeout,
                      "imper.ai to hold a verification for %s" % number)
        self.wait(lambda: any(r["verification_id"] == v["id"]
                              for r in self.ctl_json("list", "--json")),
                  timeout, "imperai-snowctl list to show %s (%s)" % (number, v["id"]))
        return v

    def wait_status(self, number, status, timeout=20.0):
        """Until list --json shows ticket number with status (wire name)."""
        def seen():
            rows = [r for r in self.ctl_json("list", "--json", "--ticket", number)]
            return rows if rows and rows[0]["status"] == status else None
        return self.wait(seen, timeout, "%s to reach status %s in the store" % (number, status))
