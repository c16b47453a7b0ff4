#!/usr/bin/env python3
"""ServiceNow Table API simulator for imperai-snow's tests and demos.

    python3 tests/sim/snow_sim.py --port 0 --data DIR [--port-file F] [...]

prints `snow_sim listening on http://127.0.0.1:PORT` as its first stdout
line and serves, on loopback only:

  /api/now[/v1|/v2]/table/{table}[/{sys_id}]   the Table API (Basic or Bearer)
  /oauth_token.do                              OAuth 2.0 token endpoint
  /, /incident.do, /sc_req_item.do, /nav_to.do the agent view (no login)
  /sim/...                                     the control API (no auth)

Behaviour follows /work/shared/SERVICENOW.md; tests/sim/README.md lists
what is implemented, what is not, and the control API.  Standard library
only.  The pieces: snow_query (encoded queries), snow_html (sanitizer),
snow_store (schema, durable state), snow_table (Table API rules),
snow_agent (HTML pages), simcommon (clock, faults, stats, HTTP base).
"""

import argparse
import base64
import binascii
import hashlib
import json
import math
import os
import re
import secrets
import sys
import threading
import time
import traceback
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import snow_agent  # noqa: E402
from simcommon import (FaultError, FaultInjector, LOOPBACK, LoopbackServer,  # noqa: E402
                       PRE_ACTIONS, Response, Script, ScriptError, SimClock, SimHandler,
                       Stats, add_tls_args, announce, fmt_time, proxy_page, send_scripted,
                       serve_until_signal, setup_tls)
from snow_store import Store, build_schema  # noqa: E402
from snow_table import (DEFAULT_SETTINGS, NO_ROWS_V1, NOT_FOUND, RenderOpts,  # noqa: E402
                        SnowInstance, error_body)

TABLE_PATH_RE = re.compile(r"^/api/now(?:/(v1|v2))?/table/([^/]+)(?:/([^/]+))?/?$")
DEFAULT_LIMIT = 10000

UNAUTHENTICATED = error_body("User Not Authenticated", "Required to provide Auth information")
UNAUTHORIZED = error_body("User Not Authorized", "Failed API level ACL Validation")
BAD_JSON = error_body("Exception while reading request", "The payload is not valid JSON.")
OAUTH_FAILURE = {"error_description": "access_denied", "error": "server_error"}
WWW_AUTH = ("WWW-Authenticate", 'BASIC realm="Service-now"')
HIBERNATING_PAGE = """<!DOCTYPE html>
<html><head><title>Instance Hibernating page</title></head>
<body><h1>Your instance is hibernating</h1>
<p>Log in to the developer portal to wake it up.</p></body></html>
"""


# ---------------------------------------------------------------- rate limits

class RateLimiter:
    """A per-user-per-hour rule counted like ServiceNow's nodes do: each
    request adds to a local count that is committed every `lag` seconds,
    and only committed counts are enforced, so a burst overshoots."""

    def __init__(self, clock):
        self.clock = clock
        self.lock = threading.Lock()
        self.configure({})

    def configure(self, cfg):
        limit, lag = cfg.get("limit", 0), cfg.get("lag", 30)
        rule = cfg.get("rule", "Table API")
        if not isinstance(limit, int) or limit < 0 or not isinstance(lag, (int, float)) or lag < 0:
            raise ValueError("limit must be an integer >= 0 and lag a number >= 0")
        with self.lock:
            self.limit, self.lag, self.rule = limit, lag, str(rule)
            self.rule_id = hashlib.md5(self.rule.encode()).hexdigest()
            self.users = {}
        return self.config()

    def config(self):
        return {"limit": self.limit, "lag": self.lag, "rule": self.rule, "rule_sys_id": self.rule_id}

    def check(self, user):
        """(allowed, headers, retry_after seconds)."""
        with self.lock:
            if not self.limit:
                return True, [], 0
            now = self.clock.now()
            window = int(now // 3600) * 3600
            u = self.users.get(user)
            if u is None or u["window"] != window:
                u = self.users[user] = {"window": window, "committed": 0, "pending": 0,
                                        "last_commit": now}
            if now - u["last_commit"] >= self.lag:
                u["committed"] += u["pending"]
                u["pending"], u["last_commit"] = 0, now
            reset = window + 3600
            headers = [("X-RateLimit-Limit", str(self.limit)), ("X-RateLimit-Reset", str(reset)),
                       ("X-RateLimit-Rule", self.rule_id)]
            if u["committed"] >= self.limit:
                return False, headers, max(1, math.ceil(reset - now))
            u["committed" if self.lag == 0 else "pending"] += 1
            return True, headers, 0

    def exceeded_body(self, limit=None):
        return error_body("Rate limit exceeded", "Rate limit of %d requests per hour for %s exceeded"
                          % (limit if limit is not None else self.limit, self.rule))


# ---------------------------------------------------------------- auth state

class AuthState:
    """OAuth tokens and server sessions (in memory: a restart logs
    everyone out, as a restarted node would)."""

    def __init__(self, clock, settings, stats):
        self.clock, self.settings, self.stats = clock, settings, stats
        self.lock = threading.Lock()
        self.access = {}    # token -> {"user", "exp"}
        self.refresh = {}   # token -> {"user", "exp", "client"}
        self.sessions = {}  # JSESSIONID -> {"user", "last"}

    def issue(self, user, client_id, with_refresh, refresh_token=None):
        now, ttl = self.clock.now(), int(self.settings["token_ttl"])
        token = secrets.token_urlsafe(64)
        with self.lock:
            self.access[token] = {"user": user, "exp": now + ttl}
            if with_refresh and refresh_token is None:
                refresh_token = secrets.token_urlsafe(64)
                self.refresh[refresh_token] = {"user": user, "client": client_id,
                                               "exp": now + int(self.settings["refresh_ttl"])}
        answer = {"access_token": token, "scope": "useraccount", "token_type": "Bearer",
                  "expires_in": ttl - 1}
        if refresh_token:
            answer["refresh_token"] = refresh_token
        return answer

    def bearer_user(self, token):
        with self.lock:
            entry = self.access.get(token)
        return entry["user"] if entry and entry["exp"] > self.clock.now() else None

    def refresh_user(self, token, client_id):
        with self.lock:
            entry = self.refresh.get(token)
        if not entry or entry["client"] != client_id or entry["exp"] <= self.clock.now():
            return None
        return entry["user"]

    def session_user(self, sid):
        now = self.clock.now()
        with self.lock:
            s = self.sessions.get(sid or "")
            if not s or now - s["last"] > self.settings["session_timeout"]:
                return None
            s["last"] = now
            return s["user"]

    def new_session(self, user):
        """Set-Cookie headers of a fresh server session."""
        sid, now = secrets.token_hex(16).upper(), self.clock.now()
        with self.lock:
            if len(self.sessions) >= 10000:  # clients without cookies make one per call
                idle = self.settings["session_timeout"]
                self.sessions = {k: s for k, s in self.sessions.items() if now - s["last"] <= idle}
            self.sessions[sid] = {"user": user, "last": now}
        self.stats.bump("sessions_created")
        return [("Set-Cookie", "JSESSIONID=%s; Path=/; HttpOnly" % sid),
                ("Set-Cookie", "glide_user_route=glide.%s; Path=/; HttpOnly" % secrets.token_hex(16)),
                ("Set-Cookie", "glide_session_store=%s; Path=/; HttpOnly" % secrets.token_hex(16))]


# ---------------------------------------------------------------- server

class Gate:
    """Holds requests of some methods before they are processed, until
    released: a request queued at the instance while its client gave up or
    died, landing later (POST /sim/hold {"methods": ["PATCH"]}, then POST
    /sim/release).  A held request waits at most MAX_HOLD seconds."""
    MAX_HOLD = 120

    def __init__(self):
        self.cond = threading.Condition()
        self.methods = set()
        self.held = 0
        self.total = 0

    def hold(self, methods):
        if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
            raise ValueError("methods must be a list of HTTP method names")
        with self.cond:
            self.methods = set(methods)
        return self.state()

    def release(self):
        with self.cond:
            self.methods = set()
            self.cond.notify_all()
        return self.state()

    def wait(self, method):
        with self.cond:
            if method not in self.methods:
                return
            self.held += 1
            self.total += 1
            self.cond.wait_for(lambda: method not in self.methods, self.MAX_HOLD)
            self.held -= 1

    def state(self):
        with self.cond:
            return {"methods": sorted(self.methods), "held": self.held, "total": self.total}


class SnowServer(LoopbackServer):
    def __init__(self, host, port, instance, seed, verbose=False):
        super().__init__(host, port, SnowHandler)
        self.port = self.server_address[1]
        self.inst = instance
        self.store = instance.store
        self.clock = instance.clock
        self.settings = instance.settings
        self.stats = Stats()
        self.faults = FaultInjector()
        self.script = Script()
        self.gate = Gate()
        self.ratelimit = RateLimiter(self.clock)
        self.auth = AuthState(self.clock, self.settings, self.stats)
        self.oauth_clients = {c["client_id"]: c for c in seed.get("oauth_clients", [])}
        self.verbose = verbose


def same_secret(expected, given):
    """Constant-time comparison that also takes non-ASCII input."""
    return secrets.compare_digest(expected.encode(), given.encode())


def table_template(version, table, sys_id):
    """Stats key of a Table API path: the sys_id becomes {sys_id}."""
    return "/api/now%s/table/%s%s" % ("/" + version if version else "", table,
                                      "/{sys_id}" if sys_id else "")


class SnowHandler(SimHandler):
    def do_GET(self):
        self.dispatch()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    # ------------------------------------------------------------ dispatch

    def dispatch(self):
        srv = self.server
        url = urlsplit(self.path)
        self.url_path, self.query_pairs = url.path, parse_qsl(url.query, keep_blank_values=True)
        self.params = dict(self.query_pairs)
        self.body = self.read_body()
        if self.url_path.startswith("/sim/"):
            return self.send(self.control())
        handler, template = self.route()
        srv.stats.request("%s %s" % (self.command, template))
        if srv.faults.client_error_repeat(self.command, self.path):
            srv.stats.bump("client_error_repeats")
        scripted = srv.script.take(self.command, self.url_path, self.path, self.headers,
                                   self.body)
        if scripted is not None and not scripted.get("pass"):
            if scripted.get("apply"):
                self.run(handler)
            srv.stats.status(scripted["status"])
            return send_scripted(self, scripted)
        latency, action, status = srv.faults.decide(
            self.command, self.url_path, self.url_path == "/oauth_token.do", self.path)
        if latency:
            time.sleep(latency)
        if action:
            srv.stats.fault(action)
        if action == "reset":
            return self.drop()
        if action in PRE_ACTIONS:
            return self.answer(self.fault_answer(action, status))
        srv.gate.wait(self.command)
        self.answer(self.run(handler), action)

    def run(self, handler):
        """A bug in the simulator answers 500 with the reason instead of
        dropping the connection, which a client would take for a fault."""
        try:
            return handler()
        except Exception as e:  # noqa: BLE001 - reported, never hidden
            traceback.print_exc()
            return Response.json(500, error_body("Simulator error", repr(e)))

    def route(self):
        m = TABLE_PATH_RE.match(self.url_path)
        if m:
            version, table, sys_id = m.groups()
            return (lambda: self.table_api(version, table, sys_id),
                    table_template(version, table, sys_id))
        pages = {"/oauth_token.do": self.oauth, "/": self.agent_list,
                 "/nav_to.do": self.agent_nav}
        if self.url_path in pages:
            return pages[self.url_path], self.url_path
        if self.url_path.endswith(".do") and self.url_path[1:-3] in snow_agent.TICKET_TABLES:
            return (lambda: self.agent_form(self.url_path[1:-3])), self.url_path
        if self.url_path.startswith("/api/"):
            return (lambda: Response.json(400, error_body(
                "Requested URI does not represent any resource", None))), self.url_path
        return (lambda: Response.html(404, snow_agent.page("Not found", "<h1>Not found</h1>"))), \
            self.url_path

    def answer(self, resp, action=None):
        """Send resp, unless a post-processing fault drops, delays or breaks it."""
        srv = self.server
        if action == "apply_then_drop":
            return self.drop()
        if action == "slow":
            time.sleep(srv.faults.config()["slow_ms"] / 1000.0)
        if action == "malformed":
            resp = Response(resp.status, resp.body[:len(resp.body) // 2] or b"{", resp.ctype,
                            resp.headers)
        srv.stats.status(resp.status)
        if action == "slow_body":
            return self.send_slowly(resp, srv.faults.config()["slow_body_ms"] / 1000.0)
        self.send(resp)

    def fault_answer(self, action, status):
        cfg = self.server.faults.config()
        if action == "proxy_html":
            return proxy_page(status)
        if action == "html":
            return Response.html(cfg["html_status"], HIBERNATING_PAGE)
        if action == "rate_429":
            return Response.json(429, self.server.ratelimit.exceeded_body(
                self.server.ratelimit.limit or 100), [("Retry-After", str(cfg["retry_after"]))])
        if status in (502, 503, 504):  # what a load balancer in front says
            return Response.html(status, "<html><body><h1>%d Service Unavailable</h1>"
                                         "</body></html>" % status)
        if action == "client_error":
            return Response.json(status, {404: NOT_FOUND, 403: UNAUTHORIZED}.get(
                status, error_body("Bad Request", "Simulated client error (fault injection)")))
        return Response.json(status, error_body("Internal Server Error",
                                                "Simulated failure (fault injection)"))

    # ------------------------------------------------------------ authentication

    def authenticate(self):
        """(user, Set-Cookie headers) or a 401 Response.  A valid JSESSIONID
        for the same user reuses its session; anything else makes a new one."""
        auth = self.server.auth
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", ""))
        except CookieError:
            pass  # a malformed cookie header is no session
        sid = cookie["JSESSIONID"].value if "JSESSIONID" in cookie else None
        header = self.headers.get("Authorization")
        if header is None:
            user = auth.session_user(sid)
            return (user, []) if user else Response.json(401, UNAUTHENTICATED, [WWW_AUTH])
        user = self.credentials_user(header)
        if user is None:
            return Response.json(401, UNAUTHENTICATED, [WWW_AUTH])
        if sid and auth.session_user(sid) == user:
            return user, []
        return user, auth.new_session(user)

    def credentials_user(self, header):
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer":
            return self.server.auth.bearer_user(value.strip())
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user if self.password_ok(user, password) else None

    def password_ok(self, user, password):
        store = self.server.store
        with store.lock:
            entry = store.auth.get(user)
            rec = store.user_by_name(user)
        if not entry or not rec or not same_secret(entry["password"], password):
            return False
        return rec.get("active") != "false" and rec.get("locked_out") != "true"

    # ------------------------------------------------------------ Table API

    def table_api(self, version, table, sys_id):
        auth = self.authenticate()
        if isinstance(auth, Response):
            return auth
        user, headers = auth
        self.user = user
        allowed, rl_headers, retry = self.server.ratelimit.check(user)
        headers = headers + rl_headers
        if not allowed:
            return Response.json(429, self.server.ratelimit.exceeded_body(),
                                 headers + [("Retry-After", str(retry))])
        resp = self.table_op(version, table, sys_id, user)
        resp.headers = headers + resp.headers
        if resp.status < 300 and self.headers.get("X-no-response-body", "").lower() == "true":
            resp.body = b""
        return resp

    def table_op(self, version, table, sys_id, user):
        inst, method = self.server.inst, self.command
        if table not in inst.schema:
            return Response.json(400, error_body("Invalid table %s" % table, None))
        if (method == "POST" and sys_id) or (method not in ("GET", "POST") and not sys_id):
            return Response.json(405, error_body(
                "Method not Supported", "%s method not supported for API" % method))
        if method != "GET" and not inst.can_write(user, table):
            return Response.json(403, UNAUTHORIZED)
        body = {}
        if method in ("POST", "PATCH", "PUT"):
            body = self.json_body()
            if body is None:
                return Response.json(400, BAD_JSON)
        with self.server.store.lock:
            if method == "GET":
                return self.get_one(table, sys_id, user) if sys_id else self.get_list(
                    version, table, user)
            if method == "POST":
                return self.post(table, user, body)
            rec = inst.get(table, user, sys_id, latest=True)
            if rec is None:
                return Response.json(404, NOT_FOUND)
            if method == "DELETE":
                inst.delete(table, user, rec)
                return Response(204, b"")
            return self.record_answer(table, *inst.write(table, user, method, body, rec,
                                                         lookup=self.lookup_references()))

    def json_body(self):
        if not self.body.strip():
            return {}
        try:
            body = json.loads(self.body)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def lookup_references(self):
        """Whether a reference given by name is looked up: documented for
        sysparm_input_display_value=true; without it ServiceNow stores the
        value as given (setting reference_input "as_given")."""
        return (self.params.get("sysparm_input_display_value", "").lower() == "true" or
                self.server.settings["reference_input"] == "lookup")

    def render_opts(self):
        opts = RenderOpts.from_params(self.params)
        opts.hidden = frozenset(self.server.inst.hidden_fields(getattr(self, "user", "")))
        return opts

    def get_one(self, table, sys_id, user):
        rec = self.server.inst.get(table, user, sys_id)
        if rec is None:
            return Response.json(404, NOT_FOUND)
        return self.record_answer(table, 200, rec)

    def post(self, table, user, body):
        status, rec = self.server.inst.write(table, user, "POST", body,
                                             lookup=self.lookup_references(), lagged=True)
        resp = self.record_answer(table, status, rec)
        if status == 201:
            resp.headers.append(("Location", "%s/api/now/table/%s/%s" % (
                self.server.inst.base_url, table, rec["sys_id"])))
        return resp

    def record_answer(self, table, status, rec):
        if status >= 400:
            return Response.json(status, rec)
        result = self.server.inst.render(table, rec, self.render_opts())
        return Response.json(status, {"result": result})

    def list_params(self):
        def number(name, default):
            try:
                return max(0, int(self.params.get(name, "")))
            except ValueError:
                return default
        query = self.params.get("sysparm_query")
        if query is None:  # name=value pairs filter when sysparm_query is absent
            query = "^".join("%s=%s" % (k, v) for k, v in self.query_pairs
                             if not k.startswith("sysparm_"))
        return query, number("sysparm_offset", 0), number("sysparm_limit", DEFAULT_LIMIT) \
            or DEFAULT_LIMIT

    def get_list(self, version, table, user):
        inst = self.server.inst
        query, offset, limit = self.list_params()
        rows, total = inst.query(table, user, query, offset, limit)
        if version == "v1" and not rows:
            return Response.json(404, NO_ROWS_V1)
        opts = self.render_opts()
        headers = []
        if self.params.get("sysparm_no_count", "").lower() != "true":
            headers.append(("X-Total-Count", str(total)))
        if self.params.get("sysparm_suppress_pagination_header", "").lower() != "true":
            headers.append(("Link", self.link_header(offset, limit, total)))
        return Response.json(200, {"result": [inst.render(table, r, opts) for r in rows]},
                             headers)

    def link_header(self, offset, limit, total):
        def url(at):
            pairs = [(k, v) for k, v in self.query_pairs
                     if k not in ("sysparm_offset", "sysparm_limit")]
            pairs += [("sysparm_offset", str(at)), ("sysparm_limit", str(limit))]
            return "<%s%s?%s>" % (self.server.inst.base_url, self.url_path, urlencode(pairs))
        links = [url(0) + ';rel="first"']
        if offset > 0:
            links.append(url(max(0, offset - limit)) + ';rel="prev"')
        if offset + limit < total:
            links.append(url(offset + limit) + ';rel="next"')
        links.append(url(max(0, (total - 1) // limit * limit)) + ';rel="last"')
        return ",".join(links)

    # ------------------------------------------------------------ OAuth

    def oauth(self):
        srv = self.server
        if self.command != "POST":
            return Response.json(405, OAUTH_FAILURE)
        form = {k: v[0] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}
        client = srv.oauth_clients.get(form.get("client_id", ""))
        if not client or not same_secret(client["client_secret"], form.get("client_secret", "")):
            return Response.json(401, OAUTH_FAILURE)
        grant, cid = form.get("grant_type"), client["client_id"]
        if grant == "password":
            user = form.get("username", "")
            if not self.password_ok(user, form.get("password", "")):
                return Response.json(401, OAUTH_FAILURE)
            return Response.json(200, srv.auth.issue(user, cid, True))
        if grant == "refresh_token":
            token = form.get("refresh_token", "")
            user = srv.auth.refresh_user(token, cid)
            if user is None:
                return Response.json(401, OAUTH_FAILURE)
            return Response.json(200, srv.auth.issue(user, cid, True, token))
        if grant == "client_credentials" and srv.settings["client_credentials"] \
                and client.get("user"):
            return Response.json(200, srv.auth.issue(client["user"], cid, False))
        return Response.json(401, OAUTH_FAILURE)

    # ------------------------------------------------------------ agent view

    def agent_list(self):
        with self.server.store.lock:
            return Response.html(200, snow_agent.ticket_list(self.server.inst))

    def agent_form(self, table):
        inst = self.server.inst
        with self.server.store.lock:
            rec = inst.store.get(table, self.params.get("sys_id", ""))
            if rec is None:
                return Response.html(404, snow_agent.page(
                    "Record not found", "<h1>Record not found</h1>"))
            return Response.html(200, snow_agent.ticket_form(inst, table, rec))

    def agent_nav(self):
        """nav_to.do?uri=incident.do?sys_id=X, the URL shape agents share."""
        uri = self.params.get("uri", "/")
        target = "/" + uri.lstrip("/") if not re.match(r"^[a-z]+:", uri) else "/"
        return Response.html(302, snow_agent.page("Redirect", ""), [("Location", target)])

    # ------------------------------------------------------------ control API

    def control(self):
        routes = {
            ("GET", "/sim/health"): lambda: {"ok": True},
            ("GET", "/sim/faults"): self.server.faults.config,
            ("POST", "/sim/faults"): self.sim_set_faults,
            ("GET", "/sim/stats"): self.sim_stats,
            ("POST", "/sim/stats/reset"): self.sim_stats_reset,
            ("GET", "/sim/clock"): self.sim_clock_state,
            ("POST", "/sim/clock"): self.sim_clock,
            ("GET", "/sim/dump"): self.sim_dump,
            ("GET", "/sim/journal"): self.sim_journal,
            ("GET", "/sim/writes"): self.sim_writes,
            ("GET", "/sim/ratelimit"): self.server.ratelimit.config,
            ("POST", "/sim/ratelimit"): self.sim_ratelimit,
            ("POST", "/sim/tickets"): self.sim_tickets,
            ("POST", "/sim/update"): self.sim_update,
            ("GET", "/sim/settings"): lambda: dict(self.server.settings),
            ("POST", "/sim/settings"): self.sim_settings,
            ("GET", "/sim/script"): self.server.script.state,
            ("POST", "/sim/script"): self.sim_script,
            ("GET", "/sim/hold"): self.server.gate.state,
            ("POST", "/sim/hold"): lambda: self.server.gate.hold(
                self.control_body().get("methods")),
            ("POST", "/sim/release"): self.server.gate.release,
        }
        fn = routes.get((self.command, self.url_path.rstrip("/")))
        if fn is None:
            return Response.json(404, {"error": "no such control endpoint"})
        try:
            out = fn()
        except (ValueError, KeyError, TypeError) as e:
            return Response.json(400, {"error": str(e)})
        return out if isinstance(out, Response) else Response.json(200, out)

    def control_body(self):
        body = json.loads(self.body or b"{}")
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        return body

    def sim_set_faults(self):
        try:
            return self.server.faults.configure(self.control_body())
        except FaultError as e:
            raise ValueError(str(e))

    def sim_script(self):
        try:
            return self.server.script.add(self.control_body())
        except ScriptError as e:
            raise ValueError(str(e))

    def sim_stats(self):
        out = self.server.stats.snapshot()
        out.setdefault("sessions_created", 0)
        return out

    def sim_stats_reset(self):
        self.server.stats.reset()
        return self.sim_stats()

    def sim_clock_state(self):
        clock = self.server.clock
        now = clock.now()
        return {"now": now, "now_text": fmt_time(now), "offset": clock.offset()}

    def sim_clock(self):
        body, clock = self.control_body(), self.server.clock
        if "advance" in body:
            clock.advance(float(body["advance"]))
        elif "set" in body:
            clock.set(float(body["set"]))
        elif body.get("reset"):
            clock.reset()
        else:
            raise ValueError("expected advance, set or reset")
        return self.sim_clock_state()

    def sim_dump(self):
        store = self.server.store
        with store.lock:
            users = [{"user_name": u, "roles": a["roles"],
                      "sys_id": (store.user_by_name(u) or {}).get("sys_id", "")}
                     for u, a in store.auth.items()]
            return json.loads(json.dumps({
                "tables": {t: list(rows.values()) for t, rows in store.tables.items()},
                "journal": store.rows("sys_journal_field"),
                "users": users, "counters": store.counters,
                "clock": self.server.clock.now()}))

    def sim_journal(self):
        table, sys_id = self.params.get("table", ""), self.params["sys_id"]
        with self.server.store.lock:
            entries = self.server.inst.journal_entries(table, sys_id)
        return [{"element": e["element"], "value": e["value"],
                 "sys_created_on": e["sys_created_on"], "sys_created_by": e["sys_created_by"],
                 "created_ms": e.get("_created_ms", 0.0)} for e in entries]

    def sim_writes(self):
        table, sys_id = self.params.get("table"), self.params.get("sys_id")
        with self.server.store.lock:
            return [w for w in self.server.store.writes
                    if (not table or w["table"] == table) and (not sys_id or w["sys_id"] == sys_id)]

    def sim_ratelimit(self):
        return self.server.ratelimit.configure(self.control_body())

    def sim_tickets(self):
        body, inst = self.control_body(), self.server.inst
        table, count = body.get("table", "incident"), int(body.get("count", 1))
        if table not in inst.schema or not 0 < count <= 100000:
            raise ValueError("unknown table or count out of 1..100000")
        with self.server.store.lock:
            status, out = inst.create_tickets(table, count, body.get("fields", {}),
                                              body.get("caller"))
        if status != 201:
            return Response.json(status, out)
        return {"tickets": out}

    def sim_update(self):
        """An edit made by a person (an agent in the form, say): a PATCH as
        `user` (default admin) that no fault touches and no stat counts,
        so a campaign can change tickets while measuring the daemon."""
        body, inst = self.control_body(), self.server.inst
        table, sys_id = body.get("table", "incident"), body.get("sys_id")
        fields, user = body.get("fields", {}), body.get("user", "admin")
        if table not in inst.schema or not isinstance(sys_id, str) or not isinstance(fields, dict):
            raise ValueError("expected table, sys_id and fields (an object)")
        with self.server.store.lock:
            if user not in self.server.store.auth:
                raise ValueError("unknown user %s" % user)
            rec = inst.get(table, "admin", sys_id, latest=True)
            if rec is None:
                return Response.json(404, NOT_FOUND)
            status, out = inst.write(table, user, "PATCH", fields, rec, lagged=True)
            return Response.json(status, {"result": out} if status < 300 else out)

    def sim_settings(self):
        update = self.control_body()
        apply_settings(self.server.settings, update)
        return dict(self.server.settings)


# ---------------------------------------------------------------- settings & CLI

SETTING_CHOICES = {"unknown_field_mode": ("ignore", "empty"), "unordered": ("insertion", "shuffle"),
                   "reference_input": ("lookup", "as_given")}


def field_acl_value(value):
    """{"user": ["table.field", ...]} checked, as the field_acl setting."""
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and
            all(isinstance(f, str) and f.count(".") == 1 for f in v) for k, v in value.items()):
        raise ValueError('field_acl must map user names to lists of "table.field"')
    return {k: list(v) for k, v in value.items()}


def apply_settings(settings, update):
    """Validate then apply a partial settings update (all or nothing)."""
    unknown = sorted(set(update) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError("unknown settings: " + ", ".join(unknown))
    clean = {}
    for key, value in update.items():
        default = DEFAULT_SETTINGS[key]
        if key in SETTING_CHOICES:
            if value not in SETTING_CHOICES[key]:
                raise ValueError("%s must be one of %s" % (key, SETTING_CHOICES[key]))
        elif key == "field_acl":
            value = field_acl_value(value)
        elif isinstance(default, bool):
            value = bool(value)
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError("%s must be a non-negative number" % key)
        clean[key] = value
    settings.update(clean)


def json_arg(text):
    """A JSON object given inline ('{...}') or as a file name."""
    if text.lstrip().startswith("{"):
        return json.loads(text)
    with open(text) as f:
        return json.load(f)


def parse_args(argv):
    p = argparse.ArgumentParser(description="ServiceNow Table API simulator (loopback only)")
    p.add_argument("--port", type=int, default=0, help="TCP port, 0 = any free port")
    p.add_argument("--host", default=LOOPBACK, help="bind address; only 127.0.0.1 is accepted")
    p.add_argument("--data", required=True, help="state directory (created if missing)")
    p.add_argument("--port-file", help="also write the port number to this file")
    p.add_argument("--seed-file", default=os.path.join(HERE, "snow_seed.json"))
    p.add_argument("--no-verification-field", action="store_true",
                   help="run without incident.u_imperai_verification")
    p.add_argument("--instance-url", help="base of reference links (default: this server)")
    p.add_argument("--faults", type=json_arg, default={}, help="fault config: JSON or file")
    p.add_argument("--fault", action="append", default=[], metavar="KEY=VALUE",
                   help="one fault key (JSON value), e.g. --fault error_rate=0.1")
    p.add_argument("--settings", type=json_arg, default={}, help="settings: JSON or file")
    p.add_argument("--client-credentials", action="store_true",
                   help="enable the OAuth client_credentials grant")
    p.add_argument("--token-ttl", type=int, help="access token lifetime, seconds")
    p.add_argument("--unknown-field-mode", choices=("ignore", "empty"))
    p.add_argument("--commit-lag", type=float,
                   help="seconds people's writes stay invisible after their sys_updated_on")
    p.add_argument("--field-acl", action="append", default=[], metavar="USER=TABLE.FIELD,...",
                   help="fields that read as empty for USER, e.g. "
                        "imperai.integration=sys_user.name,sys_user.email")
    p.add_argument("--reference-input", choices=("lookup", "as_given"),
                   help="a reference written by name: looked up, or stored as given")
    p.add_argument("--rate-limit", type=int, default=0, help="requests per user per hour, 0 = off")
    p.add_argument("--rate-lag", type=float, default=30, help="seconds between count commits")
    p.add_argument("--rate-rule", default="Table API")
    p.add_argument("--no-fsync", action="store_true", help="skip fsync (faster, not crash-safe)")
    p.add_argument("--verbose", action="store_true", help="log each request to stderr")
    add_tls_args(p)
    return p.parse_args(argv)


def build_settings(args):
    settings = dict(DEFAULT_SETTINGS)
    update = dict(args.settings)
    if args.client_credentials:
        update["client_credentials"] = True
    if args.token_ttl is not None:
        update["token_ttl"] = args.token_ttl
    if args.unknown_field_mode:
        update["unknown_field_mode"] = args.unknown_field_mode
    if args.commit_lag is not None:
        update["commit_lag"] = args.commit_lag
    if args.reference_input:
        update["reference_input"] = args.reference_input
    if args.field_acl:
        acl = dict(update.get("field_acl", {}))
        for item in args.field_acl:
            user, _, fields = item.partition("=")
            acl[user] = [f for f in fields.split(",") if f]
        update["field_acl"] = acl
    apply_settings(settings, update)
    return settings


def fault_config(args):
    cfg = dict(args.faults)
    for item in args.fault:
        key, _, value = item.partition("=")
        try:
            cfg[key] = json.loads(value)
        except ValueError:
            cfg[key] = value
    return cfg


def main(argv=None):
    args = parse_args(argv)
    if args.host != LOOPBACK:
        sys.stderr.write("snow_sim: refusing to bind %s: loopback (127.0.0.1) only\n" % args.host)
        return 2
    try:
        settings, faults = build_settings(args), fault_config(args)
        with open(args.seed_file) as f:
            seed = json.load(f)
    except (OSError, ValueError) as e:
        sys.stderr.write("snow_sim: %s\n" % e)
        return 2
    clock = SimClock()
    store = Store(args.data, build_schema(seed, not args.no_verification_field),
                  durable=not args.no_fsync)
    store.open(seed, clock.now())
    inst = SnowInstance(store, clock, settings, "", seed.get("row_acl"))
    server = SnowServer(args.host, args.port, inst, seed, args.verbose)
    try:
        setup_tls(server, args)
    except (OSError, ValueError) as e:
        sys.stderr.write("snow_sim: %s\n" % e)
        return 2
    inst.base_url = (args.instance_url or "%s://%s:%d" % (server.scheme, LOOPBACK,
                                                          server.port)).rstrip("/")
    try:
        server.faults.configure(faults)
        server.ratelimit.configure({"limit": args.rate_limit, "lag": args.rate_lag,
                                    "rule": args.rate_rule})
    except ValueError as e:
        sys.stderr.write("snow_sim: %s\n" % e)
        return 2
    announce("snow_sim", server.port, args.port_file, server.scheme)
    serve_until_signal(server, store.close)
    return 0


if __name__ == "__main__":
    sys.exit(main())
