"""Pieces shared by the local simulators (ServiceNow, imper.ai).

Standard library only.  What lives here has nothing ServiceNow-specific:
the simulated clock, durable JSON files, fault injection, request
statistics, and a threaded HTTP/1.1 server bound to loopback (plain or,
with --tls, HTTPS) with the helpers every handler needs (body reading,
JSON answers, dropping a connection with a TCP reset).
"""

import base64
import http
import http.server
import json
import os
import random
import re
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from collections import Counter

LOOPBACK = "127.0.0.1"


# ---------------------------------------------------------------- clock

class SimClock:
    """Real time plus an offset that the control API can move.

    Record timestamps, token expiry and rate-limit windows read this
    clock; measurements meant for benchmarks (at_ms, created_ms) read the
    real one, so advancing the clock never distorts a latency figure."""

    def __init__(self):
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self):
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds):
        with self._lock:
            self._offset += float(seconds)

    def set(self, epoch):
        with self._lock:
            self._offset = float(epoch) - time.time()

    def reset(self):
        with self._lock:
            self._offset = 0.0

    def offset(self):
        with self._lock:
            return self._offset


def fmt_time(epoch):
    """ServiceNow's stored date-time: 'YYYY-MM-DD HH:MM:SS', UTC, seconds."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(epoch)))


def real_ms():
    return time.time() * 1000.0


# ---------------------------------------------------------------- files

def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, data, durable=True):
    """Write bytes to path so a crash leaves either the old or the new file:
    temp file in the same directory, fsync, rename, fsync the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = "%s.tmp.%d.%d" % (path, os.getpid(), threading.get_ident())
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if durable:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_dir(directory)


def atomic_write_json(path, obj, durable=True):
    atomic_write(path, json.dumps(obj, separators=(",", ":")).encode(), durable)


# ---------------------------------------------------------------- faults

# Every fault key with its "off" value.  POST /sim/faults replaces the whole
# configuration, so a key left out is off.
FAULT_DEFAULTS = {
    "latency_ms": 0,          # added to every matching request
    "jitter_ms": 0,           # +- uniform jitter on top of latency_ms
    "error_rate": 0.0,        # share answered with one of error_codes
    "error_codes": [500, 502, 503],
    "rate_429": 0.0,          # share that starts a burst of 429 answers
    "burst_429": 1,           # length of such a burst (requests)
    "retry_after": 1,         # Retry-After seconds on those 429s
    "html_rate": 0.0,         # share answered with a text/html page
    "html_status": 200,       # status of that page (a hibernating instance says 200)
    "reset_rate": 0.0,        # share dropped (TCP reset) before processing
    "apply_then_drop_rate": 0.0,  # share processed, then dropped unanswered
    "slow_rate": 0.0,         # share processed, answered after slow_ms
    "slow_ms": 0,
    "slow_body_rate": 0.0,    # share whose body trickles out over slow_body_ms
    "slow_body_ms": 0,
    "malformed_rate": 0.0,    # share processed, answered with broken JSON
    "seed": None,             # seeds the fault RNG: same requests, same faults
    "methods": [],            # restrict to these methods (empty: all)
    "path_prefix": "",        # restrict to paths starting with this
    "include_oauth": False,   # faults also hit the token endpoint
    # 4xx answers, not applied, to a share of the requests selected above
    # whose method is in client_error_methods and whose path (no query) is
    # client_error_path (empty: any): a client must not retry them.  Drawn
    # from their own generator, so the faults above stay the same.
    "client_error_rate": 0.0,
    "client_error_codes": [400, 403, 404],
    "client_error_methods": ["GET"],
    "client_error_path": "",
    "client_error_window_ms": 900,  # the same request again within this: a retry
    # A proxy or load balancer in front of the service answering, unprocessed,
    # with its own text/html page of status proxy_status: to the next
    # proxy_count requests selected above whose method is in proxy_methods
    # and, with proxy_records_only, whose path names one record (ends in a
    # 32-hex id), and then to a proxy_rate share of them (own generator).
    "proxy_count": 0,
    "proxy_rate": 0.0,
    "proxy_status": 400,
    "proxy_methods": ["GET"],
    "proxy_records_only": True,
}

# Order in which one uniform draw is mapped to an action; the first four
# answer without processing the request, the rest process it first.
FAULT_ACTIONS = (
    ("reset", "reset_rate"),
    ("error", "error_rate"),
    ("rate_429", "rate_429"),
    ("html", "html_rate"),
    ("apply_then_drop", "apply_then_drop_rate"),
    ("slow", "slow_rate"),
    ("slow_body", "slow_body_rate"),
    ("malformed", "malformed_rate"),
)
PRE_ACTIONS = frozenset(("reset", "error", "rate_429", "html", "client_error", "proxy_html"))
RECORD_PATH_RE = re.compile(r"/[0-9a-f]{32}/?$")
PROXY_PAGE = ("<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n"
              "<center><h1>%d %s</h1></center>\r\n<hr><center>nginx</center>\r\n"
              "</body>\r\n</html>\r\n")


class FaultError(ValueError):
    pass


def parse_fault_config(obj):
    """Validated full config from a (partial) dict; unknown keys are an
    error so a typo in a campaign does not silently test nothing."""
    if not isinstance(obj, dict):
        raise FaultError("fault config must be a JSON object")
    unknown = sorted(set(obj) - set(FAULT_DEFAULTS))
    if unknown:
        raise FaultError("unknown fault keys: " + ", ".join(unknown))
    cfg = json.loads(json.dumps(FAULT_DEFAULTS))
    cfg.update(obj)
    for key, default in FAULT_DEFAULTS.items():
        value = cfg[key]
        if key == "seed":
            if value is not None and not isinstance(value, int):
                raise FaultError("seed must be an integer or null")
        elif isinstance(default, bool):
            cfg[key] = bool(value)
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise FaultError("%s must be a non-negative number" % key)
        elif isinstance(default, list):
            if not isinstance(value, list):
                raise FaultError("%s must be a list" % key)
        elif not isinstance(value, str):
            raise FaultError("%s must be a string" % key)
    cfg["methods"] = [str(m).upper() for m in cfg["methods"]]
    cfg["client_error_methods"] = [str(m).upper() for m in cfg["client_error_methods"]]
    if not cfg["error_codes"]:
        cfg["error_codes"] = [500]
    if not cfg["client_error_codes"]:
        cfg["client_error_codes"] = [400]
    if any(not isinstance(c, int) or not 400 <= c <= 499 for c in cfg["client_error_codes"]):
        raise FaultError("client_error_codes must be 4xx statuses")
    cfg["proxy_methods"] = [str(m).upper() for m in cfg["proxy_methods"]]
    if not isinstance(cfg["proxy_status"], int) or not 400 <= cfg["proxy_status"] <= 599:
        raise FaultError("proxy_status must be a 4xx or 5xx status")
    return cfg


class FaultInjector:
    """Decides, per request, the added latency and at most one fault."""

    def __init__(self):
        self._lock = threading.Lock()
        self.configure({})

    def configure(self, obj):
        cfg = parse_fault_config(obj)
        with self._lock:
            self._cfg = cfg
            self._rng = random.Random(cfg["seed"])
            self._client_rng = random.Random(None if cfg["seed"] is None else cfg["seed"] + 1)
            self._proxy_rng = random.Random(None if cfg["seed"] is None else cfg["seed"] + 2)
            self._proxy_left = int(cfg["proxy_count"])
            self._client_errors = {}  # (method, target) -> monotonic time of the 4xx
            self._burst_left = 0
        return cfg

    def config(self):
        with self._lock:
            return dict(self._cfg)

    def _matches(self, method, path, is_oauth):
        cfg = self._cfg
        if is_oauth and not cfg["include_oauth"]:
            return False
        if cfg["methods"] and method not in cfg["methods"]:
            return False
        return path.startswith(cfg["path_prefix"])

    def client_error_repeat(self, method, target):
        """1 when the same request (method and target, query included) got
        an injected 4xx less than client_error_window_ms ago: a retry."""
        with self._lock:
            at = self._client_errors.pop((method, target), None)
            return int(at is not None and
                       time.monotonic() - at < self._cfg["client_error_window_ms"] / 1000.0)

    def _proxy_hit(self, method, path):
        """The proxy answers this request itself (lock held)."""
        cfg = self._cfg
        if method not in cfg["proxy_methods"]:
            return False
        if cfg["proxy_records_only"] and not RECORD_PATH_RE.search(path):
            return False
        if self._proxy_left > 0:
            self._proxy_left -= 1
            return True
        return bool(cfg["proxy_rate"]) and self._proxy_rng.random() < cfg["proxy_rate"]

    def decide(self, method, path, is_oauth=False, target=None):
        """(latency seconds, action or None, error status or None).

        One draw per request keeps a seeded run repeatable; rates are
        shares of that draw in FAULT_ACTIONS order.  target (path and
        query) names the request for client_error_repeat."""
        with self._lock:
            if not self._matches(method, path, is_oauth):
                return 0.0, None, None
            cfg, rng = self._cfg, self._rng
            latency = cfg["latency_ms"]
            if cfg["jitter_ms"]:
                latency += rng.uniform(-cfg["jitter_ms"], cfg["jitter_ms"])
            latency = max(0.0, latency) / 1000.0
            if self._proxy_hit(method, path):
                return latency, "proxy_html", cfg["proxy_status"]
            if (cfg["client_error_rate"] and method in cfg["client_error_methods"] and
                    (not cfg["client_error_path"] or path == cfg["client_error_path"]) and
                    self._client_rng.random() < cfg["client_error_rate"]):
                self._client_errors[(method, target or path)] = time.monotonic()
                return latency, "client_error", self._client_rng.choice(cfg["client_error_codes"])
            if self._burst_left > 0:
                self._burst_left -= 1
                return latency, "rate_429", 429
            draw, edge = rng.random(), 0.0
            for action, key in FAULT_ACTIONS:
                edge += cfg[key]
                if draw < edge:
                    break
            else:
                return latency, None, None
            status = None
            if action == "error":
                status = rng.choice(cfg["error_codes"])
            elif action == "rate_429":
                self._burst_left = max(0, int(cfg["burst_429"]) - 1)
                status = 429
            return latency, action, status


# ---------------------------------------------------------------- stats

class Stats:
    """Counters the control API reports: per endpoint template, per status,
    per fault, and server sessions created."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        with self._lock:
            self.requests = Counter()
            self.by_status = Counter()
            self.faults = Counter()
            self.counters = Counter()
            self.total = 0

    def request(self, template):
        with self._lock:
            self.requests[template] += 1
            self.total += 1

    def status(self, code):
        with self._lock:
            self.by_status[str(code)] += 1

    def fault(self, name):
        with self._lock:
            self.faults[name] += 1

    def bump(self, name):
        with self._lock:
            self.counters[name] += 1

    def snapshot(self):
        with self._lock:
            out = {
                "requests": dict(self.requests),
                "by_status": dict(self.by_status),
                "faults": dict(self.faults),
                "total": self.total,
            }
            out.update(self.counters)
            return out


# ---------------------------------------------------------------- HTTP

class Response:
    """An answer built by a handler before it is sent, so fault injection
    can still delay, corrupt or drop it."""

    def __init__(self, status, body=b"", ctype="application/json;charset=UTF-8",
                 headers=None):
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode()
        self.ctype = ctype
        self.headers = list(headers or [])

    @classmethod
    def json(cls, status, obj, headers=None):
        body = json.dumps(obj, separators=(",", ":")).encode()
        return cls(status, body, headers=headers)

    @classmethod
    def html(cls, status, text, headers=None):
        return cls(status, text.encode(), "text/html;charset=UTF-8", headers)


def proxy_page(status):
    """What nginx in front of a service answers on its own: text/html."""
    reason = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ \
        else "Error"
    return Response.html(status, PROXY_PAGE % (status, reason, status, reason))


class LoopbackServer(http.server.ThreadingHTTPServer):
    """Threaded server that refuses any address but 127.0.0.1.

    With an ssl_ctx it speaks TLS: each connection's handshake runs in its
    own thread (not in the accept loop), and is counted in the server's
    stats, if it has them: connections (every accepted one, plain too),
    tls_full, tls_resumed (a session resumed from an earlier one) and
    tls_failed."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    ssl_ctx = None
    scheme = "http"

    def __init__(self, host, port, handler):
        if host != LOOPBACK:
            raise ValueError("refusing to bind %r: loopback (127.0.0.1) only" % host)
        super().__init__((host, port), handler)

    def use_tls(self, certfile, keyfile):
        self.ssl_ctx = tls_server_context(certfile, keyfile)
        self.scheme = "https"

    def count(self, name):
        stats = getattr(self, "stats", None)
        if stats is not None:
            stats.bump(name)

    def finish_request(self, request, client_address):
        self.count("connections")
        if self.ssl_ctx is None:
            return super().finish_request(request, client_address)
        try:
            conn = self.ssl_ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            self.count("tls_failed")
            return None
        self.count("tls_resumed" if conn.session_reused else "tls_full")
        try:
            return super().finish_request(conn, client_address)
        finally:
            # the plain socket was detached by wrap_socket: close this one
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            conn.close()


def tls_server_context(certfile, keyfile):
    """A TLS server context (TLS 1.2 or newer, session tickets on)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def add_tls_args(p):
    p.add_argument("--tls", action="store_true",
                   help="serve HTTPS with --tls-cert and --tls-key (see testca.py)")
    p.add_argument("--tls-cert", help="server certificate (PEM), with --tls")
    p.add_argument("--tls-key", help="its private key (PEM), with --tls")


def setup_tls(server, args):
    """--tls: the server speaks HTTPS; raises ValueError on missing files."""
    if not args.tls:
        return
    if not args.tls_cert or not args.tls_key:
        raise ValueError("--tls needs --tls-cert and --tls-key")
    server.use_tls(args.tls_cert, args.tls_key)


class SimHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler base: every answer has a Content-Length."""

    protocol_version = "HTTP/1.1"
    server_version = "ServiceNow"
    # Headers and body go out in two writes; with Nagle the second waits
    # for the client's delayed ACK (40 ms per answer on Linux).
    disable_nagle_algorithm = True

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        if getattr(self.server, "verbose", False):
            sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self):
        parts = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def write_head(self, resp, length):
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.ctype)
        self.send_header("Content-Length", str(length))
        for name, value in resp.headers:
            self.send_header(name, value)
        self.end_headers()

    def send(self, resp):
        self.write_head(resp, len(resp.body))
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    def send_slowly(self, resp, seconds, pieces=10):
        """Headers at once, then the body in pieces spread over seconds."""
        self.write_head(resp, len(resp.body))
        step = max(1, -(-len(resp.body) // pieces))
        for i in range(0, len(resp.body), step):
            self.wfile.write(resp.body[i:i + step])
            self.wfile.flush()
            time.sleep(seconds / pieces)

    def drop(self):
        """Close the connection with a TCP reset and no answer.

        SO_LINGER 0 turns close() into a RST; the read buffer holds a
        reference to the socket, so it is closed first to make close()
        effective now rather than after the handler returns."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass


def announce(name, port, port_file=None, scheme="http"):
    """Port file first (atomically), then the one line callers wait for."""
    if port_file:
        atomic_write(port_file, ("%d\n" % port).encode())
    sys.stdout.write("%s listening on %s://%s:%d\n" % (name, scheme, LOOPBACK, port))
    sys.stdout.flush()


def serve_until_signal(server, on_stop=None):
    """Serve in a thread; SIGTERM/SIGINT stop the server, run on_stop
    (flush state), and return so the process exits with status 0."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    if on_stop:
        on_stop()


# ---------------------------------------------------------------- scripted answers

class ScriptError(ValueError):
    pass


SCRIPT_RULE_KEYS = frozenset(("method", "path", "path_prefix", "answers"))
SCRIPT_ANSWER_KEYS = frozenset(("status", "headers", "body", "body_b64", "size", "fill",
                                "prefix", "suffix", "ctype", "apply", "pass"))


def _script_answer(a):
    """A validated scripted answer (see README.md, /sim/script)."""
    if not isinstance(a, dict):
        raise ScriptError("an answer must be a JSON object")
    unknown = sorted(set(a) - SCRIPT_ANSWER_KEYS)
    if unknown:
        raise ScriptError("unknown answer keys: " + ", ".join(unknown))
    if sum(k in a for k in ("body", "body_b64", "size")) > 1:
        raise ScriptError("give at most one of body, body_b64, size")
    status = a.get("status", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ScriptError("status: expected an integer 100-599")
    headers = a.get("headers", [])
    if not isinstance(headers, list) or not all(
            isinstance(h, list) and len(h) == 2 and all(isinstance(x, str) for x in h)
            for h in headers):
        raise ScriptError("headers: expected [[name, value], ...]")
    size = a.get("size", 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ScriptError("size: expected a byte count")
    for k in ("body", "fill", "prefix", "suffix", "ctype", "body_b64"):
        if k in a and not isinstance(a[k], str):
            raise ScriptError("%s: expected a string" % k)
    if "fill" in a and not a["fill"]:
        raise ScriptError("fill: expected at least one character")
    for k in ("apply", "pass"):
        if not isinstance(a.get(k, False), bool):
            raise ScriptError("%s: expected true or false" % k)
    out = dict(a)
    out["status"], out["headers"], out["size"] = status, headers, size
    if "body_b64" in a:
        try:
            out["raw"] = base64.b64decode(a["body_b64"], validate=True)
        except ValueError as e:
            raise ScriptError("body_b64: %s" % e)
    elif "size" not in a:
        out["raw"] = a.get("body", "").encode("utf-8", "surrogatepass")
    return out


class Script:
    """Raw answers for the next requests that match a method and a path
    (exact, or a prefix): what no simulated behaviour produces (hostile
    answers for the daemon's tests).  Requests matched are recorded, with
    their headers and body, so a test can see what a client sent."""

    def __init__(self):
        self._lock = threading.Lock()
        self.clear()

    def clear(self):
        with self._lock:
            self._rules = []
            self._seen = []

    def add(self, obj):
        if not isinstance(obj, dict):
            raise ScriptError("a script rule must be a JSON object")
        if obj.get("clear") is True and len(obj) == 1:
            self.clear()
            return self.state()
        unknown = sorted(set(obj) - SCRIPT_RULE_KEYS)
        if unknown:
            raise ScriptError("unknown script keys: " + ", ".join(unknown))
        method = obj.get("method", "")
        path, prefix = obj.get("path"), obj.get("path_prefix")
        if not isinstance(method, str) or (path is None) == (prefix is None) or \
                not isinstance(path if path is not None else prefix, str):
            raise ScriptError("expected method and exactly one of path, path_prefix (strings)")
        answers = obj.get("answers")
        if not isinstance(answers, list) or not answers:
            raise ScriptError("answers: expected a non-empty list")
        rule = {"method": method.upper(), "path": path, "path_prefix": prefix,
                "answers": [_script_answer(a) for a in answers]}
        with self._lock:
            self._rules.append(rule)
        return self.state()

    def state(self):
        with self._lock:
            return {"rules": [{"method": r["method"], "path": r["path"],
                               "path_prefix": r["path_prefix"], "left": len(r["answers"])}
                              for r in self._rules],
                    "seen": list(self._seen)}

    def take(self, method, path, target, headers, body):
        """The next scripted answer for this request, or None."""
        with self._lock:
            for r in self._rules:
                if r["method"] and r["method"] != method:
                    continue
                if r["path"] is not None and path != r["path"]:
                    continue
                if r["path_prefix"] is not None and not path.startswith(r["path_prefix"]):
                    continue
                a = r["answers"].pop(0)
                if not r["answers"]:
                    self._rules.remove(r)
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
                self._seen.append({"method": method, "target": target,
                                   "headers": [[k, v] for k, v in headers.items()],
                                   "body": text if text is not None else "",
                                   "body_b64": base64.b64encode(body).decode()})
                return a
        return None


def send_scripted(handler, a):
    """Writes a scripted answer; a generated body (size) is streamed in
    chunks, so a 100 MB answer costs no memory.  A client that hangs up
    early (a size cap) is expected."""
    ctype = a.get("ctype", "application/json;charset=UTF-8")
    prefix = a.get("prefix", "").encode()
    suffix = a.get("suffix", "").encode()
    raw = a.get("raw")
    length = len(raw) if raw is not None else len(prefix) + a["size"] + len(suffix)
    handler.send_response(a["status"])
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(length))
    for name, value in a["headers"]:
        handler.send_header(name, value)
    handler.end_headers()
    try:
        if raw is not None:
            handler.wfile.write(raw)
            return
        handler.wfile.write(prefix)
        fill = a.get("fill", "x").encode()
        chunk = (fill * (65536 // len(fill) + 1))[:65536]
        left = a["size"]
        while left > 0:
            n = min(left, len(chunk))
            handler.wfile.write(chunk[:n])
            left -= n
        handler.wfile.write(suffix)
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True
