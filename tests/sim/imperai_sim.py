#!/usr/bin/env python3
"""imperai_sim: a local stand-in for the imper.ai verification service.

It speaks the contract of man/imperai-snow-api.7 (API v1) and serves the
pages people use: the agent's send page, an outbox of the emails and SMS
"sent", the requester's verification page, the password-reset page, and
the console's verifications list and details.  Python 3 standard library
only; listens on 127.0.0.1; state lives in --data DIR and survives a
restart.  See tests/sim/IMPERAI.md.
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import html
import json
import os
import random
import re
import sys
import threading
import time
import traceback
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simcommon import (  # noqa: E402 - the shared simulator pieces, next to this file
    LOOPBACK, PRE_ACTIONS, FaultError, FaultInjector, LoopbackServer, Response, Script,
    ScriptError, SimHandler, Stats, add_tls_args, announce, atomic_write, proxy_page,
    send_scripted, serve_until_signal, setup_tls)

API = "/v1/verification-requests"
FINAL = ("passed", "failed", "timed_out", "not_enough_questions", "canceled")
EXPIRABLE = ("pending", "link_sent", "in_progress")
TRANSITIONS = {
    "pending": ("link_sent", "timed_out", "canceled"),
    "link_sent": ("in_progress", "timed_out", "canceled"),
    "in_progress": ("passed", "failed", "timed_out", "not_enough_questions", "canceled"),
}
STATUS_LABEL = {
    "pending": "Pending", "link_sent": "Link Sent", "in_progress": "In Progress",
    "passed": "Passed", "failed": "Failed", "timed_out": "Timed Out",
    "not_enough_questions": "Not Enough Questions", "canceled": "Canceled",
}
REC_PROCEED = "User verified successfully - Proceed with action"
REC_MEDIUM = "Medium risk - Confirm the request through a second channel before proceeding"
REC_REJECT = "High risk detected - Reject this request"
REC_NEQ = "Not enough questions answered - Verify the requester by other means"
REC_TIMEOUT = "Verification timed out - Send a new verification link"
SUMMARY = {
    "passed": "The requester answered the challenge questions consistently with the "
              "expected profile; no signs of impersonation were found.",
    "failed": "The challenge answers did not match the expected profile and the session "
              "showed signs consistent with impersonation.",
    "not_enough_questions": "The requester answered too few challenge questions for a decision.",
    "timed_out": "The verification was not completed before the link expired.",
    "canceled": "The request was canceled before verification finished.",
}
QUESTIONS = (
    ("q1", "Which team do you work in?"),
    ("q2", "What is your manager's first name?"),
    ("q3", "Which office do you usually work from?"),
)
IDEMPOTENCY_KEEP = 48 * 3600
RESET_TTL = 900
MAX_BODY = 1 << 20
EMAIL_RE = re.compile(r"^[^@\s<>\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}$")
PHONE_RE = re.compile(r"^\+[1-9][0-9]{7,14}$")
ACTION_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
ERROR_CODE_NAMES = {500: "internal_error", 502: "bad_gateway", 503: "unavailable",
                    504: "gateway_timeout", 400: "invalid_request", 401: "unauthorized",
                    403: "forbidden", 404: "not_found"}


class ApiError(Exception):
    """An answer other than success: status, error code, message."""

    def __init__(self, status, code, message, extra=None, headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self):
        err = {"code": self.code, "message": self.message}
        err.update(self.extra)
        return {"error": err}


def rfc3339(t):
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def encode_cursor(seq):
    return base64.urlsafe_b64encode(("v1:%d" % seq).encode()).decode().rstrip("=")


def decode_cursor(c):
    if not c:
        return 0
    try:
        raw = base64.urlsafe_b64decode(c + "=" * (-len(c) % 4)).decode("ascii")
        if not raw.startswith("v1:") or not raw[3:].isdigit():
            raise ValueError
        return int(raw[3:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "invalid_cursor", "cursor: not a cursor this service issued")


def mask_email(addr):
    local, _, domain = addr.partition("@")
    labels = domain.split(".")
    name, tld = ".".join(labels[:-1]), labels[-1]
    masked_local = local[0] + "***" + (local[-1] if len(local) > 2 else "")
    return "%s@%s***.%s" % (masked_local, name[:1], tld)


def mask_phone(num):
    digits = num[1:]
    return "+" + digits[:1] + "*" * (len(digits) - 3) + digits[-2:]


def normalize_phone(s):
    return re.sub(r"[\s().-]", "", s)


def risk_level(score):
    if score is None:
        return "Unknown"
    return "Verified" if score <= 3 else "Medium" if score <= 6 else "High"


def recommendation(outcome, risk):
    if outcome == "passed":
        return REC_PROCEED if risk is None or risk <= 3 else REC_MEDIUM if risk <= 6 else REC_REJECT
    return {"failed": REC_REJECT, "not_enough_questions": REC_NEQ,
            "timed_out": REC_TIMEOUT}.get(outcome)


def want_str(obj, key, where, required=False, nullable=True, maxlen=1024, nonempty=False):
    """Validates obj[key] as a string for a 400 answer that names the field."""
    name = where + key
    if key not in obj:
        if required:
            raise ApiError(400, "invalid_request", "%s: required" % name)
        return None
    v = obj[key]
    if v is None and nullable and not required:
        return None
    if not isinstance(v, str):
        raise ApiError(400, "invalid_request", "%s: expected string%s" %
                       (name, " or null" if nullable and not required else ""))
    if "\x00" in v:
        raise ApiError(400, "invalid_request", "%s: contains a NUL character" % name)
    try:
        size = len(v.encode("utf-8"))
    except UnicodeEncodeError:
        raise ApiError(400, "invalid_request", "%s: not valid Unicode (lone surrogate)" % name)
    if size > maxlen:
        raise ApiError(400, "invalid_request", "%s: longer than %d bytes" % (name, maxlen))
    if nonempty and not v.strip():
        raise ApiError(400, "invalid_request", "%s: must not be empty" % name)
    return v


def validate_create(body):
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "body: expected a JSON object")
    t = body.get("ticket")
    if not isinstance(t, dict):
        raise ApiError(400, "invalid_request", "ticket: required object")
    ticket = {k: want_str(t, k, "ticket.", required=True, maxlen=256, nonempty=True)
              for k in ("instance", "table", "sys_id", "number")}
    ticket["url"] = want_str(t, "url", "ticket.", maxlen=2048)
    out = {"ticket": ticket,
           "subject": want_str(body, "subject", "", required=True),
           "description": want_str(body, "description", "", maxlen=65536),
           "category": want_str(body, "category", "", maxlen=256),
           "requested_action": want_str(body, "requested_action", "", required=True, maxlen=64),
           "assigned_agent": want_str(body, "assigned_agent", "", maxlen=256)}
    if not ACTION_RE.match(out["requested_action"]):
        raise ApiError(400, "invalid_request",
                       "requested_action: expected a lower-case word such as password_reset or none")
    r = body.get("requester")
    if not isinstance(r, dict):
        raise ApiError(400, "invalid_request", "requester: required object")
    out["requester"] = {k: want_str(r, k, "requester.", maxlen=256)
                        for k in ("name", "email", "user_name")}
    return out


class Store:
    """All state, behind one lock; every change is written before it is answered."""

    def __init__(self, datadir, seed, link_ttl, daily_cap, durable=True, persist=True):
        self.lock = threading.RLock()
        self.durable = durable
        self.persist = persist  # False (--in-memory): nothing is written
        self.next_expiry = None  # the earliest expires_at of an expirable request, if known
        self.dir = datadir
        self.vdir = os.path.join(datadir, "verifications")
        self.seed, self.link_ttl, self.daily_cap = seed, link_ttl, daily_cap
        self.base_url = "http://127.0.0.1"
        self.meta = {"seq": 0, "counter": 0, "clock_offset": 0.0, "frozen_now": None,
                     "outage_until": 0}
        self.v, self.idem, self.tokens = {}, {}, {}
        os.makedirs(self.vdir, exist_ok=True)
        self.load()

    # persistence

    def load(self):
        mpath = os.path.join(self.dir, "meta.json")
        if os.path.exists(mpath):
            with open(mpath, encoding="utf-8") as f:
                self.meta.update(json.load(f))
        for name in os.listdir(self.vdir):
            if ".tmp." in name:  # a write cut short by a crash: the old file stands
                os.unlink(os.path.join(self.vdir, name))
            elif name.endswith(".json"):
                with open(os.path.join(self.vdir, name), encoding="utf-8") as f:
                    self.index(json.load(f))
        # a crash between a record and meta.json leaves meta behind: catch up
        for r in self.v.values():
            self.meta["seq"] = max(self.meta["seq"], r["seq"])
            self.meta["counter"] = max(self.meta["counter"], r["n"])

    def index(self, r):
        self.v[r["id"]] = r
        key = (r.get("idem") or {}).get("key")
        held = self.v.get(self.idem.get(key))
        if key and (held is None or held["idem"]["at"] <= r["idem"]["at"]):
            self.idem[key] = r["id"]
        for kind, tok in r["tokens"].items():
            if tok:
                self.tokens[tok] = (kind, r["id"])
        # links replaced by a re-send: still known, never usable again
        for kind, tok in r.get("spent", []):
            self.tokens[tok] = ("spent-" + kind, r["id"])

    def save_meta(self):
        if not self.persist:
            return
        atomic_write(os.path.join(self.dir, "meta.json"),
                     json.dumps(self.meta, sort_keys=True).encode(), self.durable)

    def save(self, r):
        if not self.persist:
            return
        atomic_write(os.path.join(self.vdir, r["id"] + ".json"),
                     json.dumps(r, sort_keys=True).encode(), self.durable)
        self.save_meta()

    # clock and changes

    def now(self):
        if self.meta["frozen_now"] is not None:
            return int(self.meta["frozen_now"])
        return int(time.time() + self.meta["clock_offset"])

    def set_clock(self, advance=None, at=None, freeze=None, reset=False):
        """The sim clock: real time plus an offset, or frozen (it moves only when told)."""
        with self.lock:
            m = self.meta
            if reset:
                m["clock_offset"], m["frozen_now"] = 0.0, None
            key = "frozen_now" if m["frozen_now"] is not None else "clock_offset"
            if at is not None:
                m[key] = at if key == "frozen_now" else at - time.time()
            if advance is not None:
                m[key] += advance
            if freeze is True and m["frozen_now"] is None:
                m["frozen_now"] = self.now()
            elif freeze is False and m["frozen_now"] is not None:
                m["clock_offset"], m["frozen_now"] = m["frozen_now"] - time.time(), None
            self.save_meta()
            self.tick()
            return self.now()

    def touch(self, r):
        """Records a change: the request moves to the head of the change log."""
        self.meta["seq"] += 1
        r["seq"] = self.meta["seq"]
        r["updated_at"] = self.now()
        self.save(r)

    def tick(self):
        """Lazy expiry, run at the start of every request: a walk over the
        requests only once the earliest expiry has come (a new request
        expires last; expires_at never changes)."""
        now = self.now()
        if self.next_expiry is not None and now < self.next_expiry:
            return
        soonest = float("inf")
        for r in self.v.values():
            if r["status"] in EXPIRABLE:
                if now >= r["expires_at"]:
                    self.finish(r, "timed_out", None)
                else:
                    soonest = min(soonest, r["expires_at"])
        self.next_expiry = soonest

    def clock_state(self):
        with self.lock:
            now = self.now()
            return {"now": now, "now_text": rfc3339(now), "offset": now - int(time.time()),
                    "frozen": self.meta["frozen_now"] is not None}

    def outage_left(self):
        return max(0, self.meta["outage_until"] - self.now())

    def set_outage(self, seconds):
        with self.lock:
            self.meta["outage_until"] = self.now() + seconds if seconds > 0 else 0
            self.save_meta()

    # identifiers

    def rng(self, what):
        if self.seed is None:
            return random.SystemRandom()
        return random.Random("%s:%d:%s" % (self.seed, self.meta["counter"], what))

    def token(self, r, kind):
        # a replaced link never comes back, even with --seed
        what = "%s:%s" % (r["id"], kind) + (":%d" % len(r["spent"]) if r.get("spent") else "")
        tok = base64.urlsafe_b64encode(
            self.rng(what).getrandbits(144).to_bytes(18, "big")).decode()
        self.tokens[tok] = (kind, r["id"])
        r["tokens"][kind] = tok
        return tok

    # the API object

    def api(self, r):
        a = r["action"]
        return {
            "id": r["id"], "ticket": dict(r["ticket"]), "status": r["status"],
            "channel": r["channel"], "recipient_masked": r["recipient_masked"],
            "initiated_by": r["initiated_by"], "risk_score": r["risk_score"],
            "recommendation": r["recommendation"], "analysis_summary": r["analysis_summary"],
            "additional_info": r["additional_info"],
            "send_link_url": "%s/send/%s" % (self.base_url, r["tokens"]["send"]),
            "details_url": "%s/verifications/%s" % (self.base_url, r["id"]),
            "expires_at": rfc3339(r["expires_at"]), "created_at": rfc3339(r["created_at"]),
            "completed_at": rfc3339(r["completed_at"]), "updated_at": rfc3339(r["updated_at"]),
            "sent_at": rfc3339(r["sent_at"]),
            "action": {"type": a["type"], "status": a["status"],
                       "completed_at": rfc3339(a["completed_at"]), "automated": a["automated"]},
            "category": r["category"], "requested_action": r["requested_action"],
            "subject": r["subject"],
        }

    def get(self, vid):
        r = self.v.get(vid)
        if r is None:
            raise ApiError(404, "not_found", "no verification request %s" % vid)
        return r

    # API operations

    def create(self, body, key):
        """Returns (status, object): 201 new, 200 replay of the same key and body."""
        req = validate_create(body)
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                                .encode()).hexdigest()
        with self.lock:
            now = self.now()
            old = self.v.get(self.idem.get(key)) if key else None
            if old is not None and old["idem"]["at"] + IDEMPOTENCY_KEEP > now:
                if old["idem"]["hash"] != digest:
                    raise ApiError(409, "idempotency_conflict",
                                   "Idempotency-Key was already used with a different body "
                                   "(for %s)" % old["id"])
                return 200, self.api(old)
            r = self.new_record(req, now)
            if key:
                r["idem"] = {"key": key, "hash": digest, "at": now}
                self.idem[key] = r["id"]
            self.v[r["id"]] = r
            if self.next_expiry is not None:
                self.next_expiry = min(self.next_expiry, r["expires_at"])
            self.touch(r)
            return 201, self.api(r)

    def new_record(self, req, now):
        self.meta["counter"] += 1
        n = self.meta["counter"]
        vid = "vr_%012x" % self.rng("id").getrandbits(48)
        while vid in self.v:
            vid = "vr_%012x" % random.SystemRandom().getrandbits(48)
        act = req["requested_action"]
        r = dict(req, id=vid, n=n, seq=0, status="pending", created_at=now, updated_at=now,
                 expires_at=now + self.link_ttl, completed_at=None, channel=None,
                 recipient=None, recipient_masked=None, initiated_by=None, risk_score=None,
                 recommendation=None, analysis_summary=None, additional_info=None,
                 sent_at=None, reset_expires_at=None, idem=None,
                 tokens={"send": None, "verify": None, "reset": None},
                 used={"send": False, "verify": False, "reset": False},
                 action={"type": act, "status": "none" if act == "none" else "pending",
                         "completed_at": None, "automated": False})
        self.token(r, "send")
        return r

    def move(self, r, to):
        if to not in TRANSITIONS.get(r["status"], ()):
            raise ApiError(409, "invalid_transition",
                           "%s is %s and cannot become %s" % (r["id"], r["status"], to))
        r["status"] = to

    def finish(self, r, outcome, risk):
        """Ends a request with outcome (a final status) and records the details."""
        self.move(r, outcome)
        r["completed_at"] = self.now()
        r["risk_score"] = risk
        r["recommendation"] = recommendation(outcome, risk)
        r["analysis_summary"] = SUMMARY[outcome]
        if outcome == "failed":
            r["additional_info"] = "Contact the user through a channel already on record."
        if r["action"]["status"] == "pending":
            if outcome == "passed":
                if r["action"]["type"] == "password_reset":
                    self.token(r, "reset")
                    r["reset_expires_at"] = self.now() + RESET_TTL
            else:
                r["action"]["status"] = "none"
        self.touch(r)

    def cancel(self, vid, reason):
        with self.lock:
            r = self.get(vid)
            if r["status"] == "canceled":
                return self.api(r)
            if r["status"] in FINAL:
                raise ApiError(409, "already_final", "%s is already %s" % (vid, r["status"]),
                               extra={"verification": self.api(r)})
            if reason:
                r["additional_info"] = "Canceled by the service desk: " + reason
            self.finish(r, "canceled", None)
            return self.api(r)

    def feed(self, cursor, limit):
        after = decode_cursor(cursor)
        with self.lock:
            newer = sorted((r for r in self.v.values() if r["seq"] > after),
                           key=lambda r: r["seq"])
            page = newer[:limit]
            last = page[-1]["seq"] if page else after
            return {"data": [self.api(r) for r in page], "next_cursor": encode_cursor(last),
                    "has_more": len(newer) > limit}

    # what people (and tests) do

    def sent_today(self, who):
        day = self.now() // 86400
        return sum(1 for r in self.v.values()
                   if r["sent_at"] is not None and r["sent_at"] // 86400 == day
                   and self.cap_key(r) == who)

    @staticmethod
    def cap_key(r):
        return ((r["requester"] or {}).get("email") or r["recipient"] or "").strip().lower()

    def send(self, vid, recipient, agent, channel=None):
        """The agent sends the verification link to the requester's private address."""
        recipient, agent = (recipient or "").strip(), (agent or "").strip()
        if channel not in (None, "", "email", "sms"):
            raise ApiError(400, "invalid_request", "channel: expected email or sms")
        if channel == "email" or (not channel and "@" in recipient):
            if not EMAIL_RE.match(recipient):
                raise ApiError(400, "invalid_request",
                               "That is not an email address (expected name@example.com).")
            channel = "email"
        else:
            recipient = normalize_phone(recipient)
            if not PHONE_RE.match(recipient):
                raise ApiError(400, "invalid_request",
                               "Enter the requester's private email address (name@example.com) "
                               "or mobile number in international format (+15551234567).")
            channel = "sms"
        if not agent or len(agent) > 100:
            raise ApiError(400, "invalid_request",
                           "Enter your name (the agent sending the link), at most 100 characters.")
        with self.lock:
            r = self.get(vid)
            if r["status"] not in EXPIRABLE:
                raise ApiError(409, "invalid_transition",
                               "%s is %s: a link can only be sent before the outcome" %
                               (vid, r["status"]))
            probe = dict(r, recipient=recipient)
            if self.daily_cap and self.sent_today(self.cap_key(probe)) >= self.daily_cap:
                raise ApiError(429, "daily_cap_reached",
                               "This user has reached the limit of %d verifications per day. "
                               "Try again tomorrow or verify the user another way." %
                               self.daily_cap)
            if r["status"] == "pending":
                self.move(r, "link_sent")
            else:
                # a re-send: the requester starts over with the new link
                r["status"] = "link_sent"
                self.spend(r, "verify")
            r.update(channel=channel, recipient=recipient, initiated_by=agent,
                     recipient_masked=mask_email(recipient) if channel == "email"
                     else mask_phone(recipient), sent_at=self.now(),
                     send_count=r.get("send_count", 0) + 1)
            # the send link is single-use too: the next send takes a new one
            self.spend(r, "send")
            self.token(r, "send")
            self.token(r, "verify")
            self.touch(r)
            return r

    def spend(self, r, kind):
        """The link of kind stops working for good (replaced by a new one)."""
        tok = r["tokens"].get(kind)
        if tok:
            r.setdefault("spent", []).append((kind, tok))
            self.tokens[tok] = ("spent-" + kind, r["id"])
            r["tokens"][kind] = None

    def start(self, vid):
        with self.lock:
            r = self.get(vid)
            self.move(r, "in_progress")
            self.touch(r)
            return r

    def complete(self, vid, outcome, risk=None):
        if outcome not in ("passed", "failed", "not_enough_questions", "timed_out"):
            raise ApiError(400, "invalid_request",
                           "outcome: expected passed, failed, not_enough_questions or timed_out")
        if risk is not None and (not isinstance(risk, int) or isinstance(risk, bool)
                                 or not 0 <= risk <= 10):
            raise ApiError(400, "invalid_request", "risk_score: expected integer 0-10")
        with self.lock:
            r = self.get(vid)
            if r["status"] == "link_sent":
                self.start(vid)
            if outcome not in TRANSITIONS.get(r["status"], ()):
                self.move(r, outcome)  # raises the 409
            if risk is None:
                risk = {"passed": self.rng(vid + ":risk").randint(1, 3), "failed": 9}.get(outcome)
            r["used"]["verify"] = True
            self.finish(r, outcome, risk)
            return r

    def act_action(self, vid, status, automated=True):
        if status not in ("completed", "failed"):
            raise ApiError(400, "invalid_request", "status: expected completed or failed")
        with self.lock:
            r = self.get(vid)
            a = r["action"]
            if r["status"] != "passed" or a["type"] == "none" or a["status"] not in ("pending",
                                                                                    "failed"):
                raise ApiError(409, "invalid_transition",
                               "%s: the action can run only after a pass (status %s, action %s)"
                               % (vid, r["status"], a["status"]))
            a["status"], a["automated"] = status, bool(automated)
            a["completed_at"] = self.now() if status == "completed" else None
            if status == "completed":
                r["used"]["reset"] = True
            self.touch(r)
            return r

    def expire(self, vid):
        with self.lock:
            r = self.get(vid)
            self.finish(r, "timed_out", None)
            return r

    def retarget(self, vid, ticket):
        if not isinstance(ticket, dict):
            raise ApiError(400, "invalid_request", "ticket: expected object")
        with self.lock:
            r = self.get(vid)
            for k, val in ticket.items():
                if k in ("instance", "table", "sys_id", "number", "url"):
                    r["ticket"][k] = val
            self.touch(r)
            return r

    def by_token(self, tok, kind):
        with self.lock:
            hit = self.tokens.get(tok)
            if hit is None or hit[0] != kind:
                return None
            return self.v[hit[1]]


def route_name(method, path):
    """The stats key: "GET /v1/verification-requests/{id}"."""
    parts = path.split("/")
    if path.startswith(API + "/"):
        rest = path[len(API) + 1:]
        if rest == "changes":
            return method + " " + API + "/changes"
        if rest.endswith("/cancel"):
            return method + " " + API + "/{id}/cancel"
        return method + " " + API + "/{id}"
    if len(parts) == 3 and parts[1] in ("send", "verify", "reset"):
        return "%s /%s/{token}" % (method, parts[1])
    if len(parts) == 3 and parts[1] == "verifications":
        return method + " /verifications/{id}"
    return method + " " + path


# Pages.

CSS = ("body{font-family:sans-serif;max-width:60em;margin:0 auto 2em;padding:0 1em;color:#222}"
       "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em}"
       ".error{color:#b00020;font-weight:bold}.ok{color:#1b5e20;font-weight:bold}"
       "label{display:block;margin-top:.8em}dt{font-weight:bold;margin-top:.5em}"
       "input{font:inherit;padding:.3em .4em;width:24em;max-width:100%}"
       "button{font:inherit;padding:.4em 1.2em;background:#3949ab;color:#fff;border:0;"
       "border-radius:4px;cursor:pointer}"
       "#brand{display:flex;justify-content:space-between;align-items:baseline;"
       "border-bottom:3px solid #3949ab;padding:.6em 0;margin-bottom:1em}"
       "#brand strong{color:#3949ab;font-size:1.3em}#brand small{color:#666}"
       "#brand nav a{margin-left:1em}")
# Every page says whose it is, so a person walking the demo knows which
# system they are in; the links are the simulator's own pages.
BRAND = ('<header id="brand"><span><strong>imper.ai</strong> <small>simulator</small></span>'
         '<nav><a href="/verifications">Verifications</a><a href="/outbox">Outbox</a></nav>'
         '</header>')


def esc(s):
    return html.escape("" if s is None else str(s), quote=True)


def page(title, body):
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>%s - imper.ai (simulator)</title><style>%s</style></head>"
            "<body>%s<h1>%s</h1>\n%s\n</body></html>\n" % (esc(title), CSS, BRAND, esc(title),
                                                             body))


def gone_page(title, why):
    return 410, page(title, '<p id="gone" class="error">%s</p>' % esc(why))


def why_gone(r):
    if r["status"] == "timed_out":
        return "This link has expired. Ask the service desk for a new verification link."
    if r["status"] == "canceled":
        return "This verification request was canceled by the service desk."
    return "This link has already been used. Each verification link works only once."


def send_form(r, error=None, recipient="", agent=""):
    err = '<p id="error" class="error">%s</p>' % esc(error) if error else ""
    if r["sent_at"] is not None:
        err += ('<p id="resend">A link was sent to %s on %s by %s. Sending again replaces '
                'it: the earlier link stops working.</p>') % (
            esc(r["recipient_masked"]), esc(rfc3339(r["sent_at"])), esc(r["initiated_by"]))
    return page("Send verification link", (
        '<p>Ticket <strong id="ticket-number">%s</strong>: <span id="subject">%s</span></p>'
        '<p>Requester: <span id="requester">%s</span></p>%s'
        '<form method="post" id="send-form">'
        '<label for="recipient">Requester\'s private email or mobile number</label>'
        '<input id="recipient" name="recipient" value="%s" size="40" '
        'placeholder="jane@example.com or +15551234567">'
        '<label for="agent">Your name</label><input id="agent" name="agent" value="%s" size="40">'
        '<p><button id="send" type="submit">Send verification link</button></p></form>') % (
        esc(r["ticket"]["number"]), esc(r["subject"]), esc((r["requester"] or {}).get("name")),
        err, esc(recipient), esc(agent)))


def verify_form(r, outcome, risk):
    hidden = ""
    if outcome:
        hidden += '<input type="hidden" name="outcome" value="%s">' % esc(outcome)
    if risk is not None:
        hidden += '<input type="hidden" name="risk" value="%s">' % esc(risk)
    qs = "".join('<label for="%s">%s</label><input id="%s" name="%s" size="40">' %
                 (q, esc(text), q, q) for q, text in QUESTIONS)
    return page("Verify your identity", (
        '<p>The service desk asked imper.ai to confirm your identity for ticket '
        '<strong id="ticket-number">%s</strong>.</p><form method="post" id="verify-form">%s%s'
        '<p><button id="verify" type="submit">Verify</button></p></form>') % (
        esc(r["ticket"]["number"]), qs, hidden))


def reset_form(r, error=None):
    err = '<p id="error" class="error">%s</p>' % esc(error) if error else ""
    return page("Reset your password", (
        '<p>Identity verified for ticket <strong id="ticket-number">%s</strong>. '
        'Choose a new password (at least 12 characters, with a letter and a digit).</p>%s'
        '<form method="post" id="reset-form">'
        '<label for="password">New password</label>'
        '<input id="password" name="password" type="password" autocomplete="new-password">'
        '<label for="confirm">New password again</label>'
        '<input id="confirm" name="confirm" type="password" autocomplete="new-password">'
        '<p><button id="reset" type="submit">Reset password</button></p></form>') % (
        esc(r["ticket"]["number"]), err))


def password_problem(pw, again):
    if len(pw) < 12:
        return "The password must be at least 12 characters long."
    if not re.search(r"[A-Za-z]", pw) or not re.search(r"[0-9]", pw):
        return "The password must contain at least one letter and one digit."
    if pw != again:
        return "The two passwords do not match."
    return None


def verdict(form):
    """The verification page's outcome rule (tests/sim/IMPERAI.md)."""
    outcome, risk = form.get("outcome") or None, form.get("risk")
    risk = int(risk) if risk not in (None, "") and risk.isdigit() and int(risk) <= 10 else None
    answers = [form.get(q, "").strip().lower() for q, _ in QUESTIONS]
    if outcome not in (None, "passed", "failed", "not_enough_questions"):
        outcome = None
    if outcome is None:
        if "fail" in answers:
            outcome = "failed"
        elif sum(1 for a in answers if a) < 2:
            outcome = "not_enough_questions"
        else:
            outcome = "passed"
    return outcome, risk



def error_response(e):
    return Response.json(e.status, e.body(), list(e.headers.items()))


def html_response(status_page):
    return Response.html(*status_page)


def json_body(raw):
    try:
        return json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "body: not valid UTF-8")
    except ValueError as e:
        raise ApiError(400, "invalid_json", "body: not valid JSON: %s" % e)


def want_keys(body, allowed):
    """Control bodies: an unknown key is a typo that would test nothing."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "body: expected a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ApiError(400, "invalid_request", "unknown keys: " + ", ".join(unknown))
    return body


class Handler(SimHandler):
    server_version = "imperai_sim"
    timeout = 120  # an idle keep-alive connection is closed after this

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def handle(self):
        """A client that hangs up (a timeout, a test of one) is not an error."""
        try:
            super().handle()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def dispatch(self):
        srv = self.server
        url = urllib.parse.urlsplit(self.path)
        path, query = url.path, urllib.parse.parse_qs(url.query)
        n = self.headers.get("Content-Length") or "0"
        if not n.isdigit() or int(n) > MAX_BODY:
            self.close_connection = True  # the body is not read: the connection is unusable
            return self.send(error_response(ApiError(
                413, "payload_too_large", "body: larger than %d bytes" % MAX_BODY)))
        raw = self.read_body()
        with srv.store.lock:
            srv.store.tick()
        if path.startswith("/sim/"):
            return self.send(self.run(lambda: self.control(path, raw)))
        srv.stats.request(route_name(self.command, path))
        if srv.faults.client_error_repeat(self.command, self.path):
            srv.stats.bump("client_error_repeats")
        scripted = srv.script.take(self.command, path, self.path, self.headers, raw)
        if scripted is not None and not scripted.get("pass"):
            if scripted.get("apply"):
                self.run(lambda: self.route(path, query, raw))
            srv.stats.status(scripted["status"])
            return send_scripted(self, scripted)
        latency, action, status = srv.faults.decide(self.command, path, target=self.path)
        if latency:
            time.sleep(latency)
        if action:
            srv.stats.fault(action)
        if action == "reset":
            return self.drop()
        if action in PRE_ACTIONS:
            return self.answer(self.fault_answer(action, status))
        self.answer(self.run(lambda: self.route(path, query, raw)), action)

    def run(self, fn):
        """An ApiError becomes its answer; a simulator bug answers 500 and
        says so, rather than dropping the connection like a fault."""
        try:
            return fn()
        except ApiError as e:
            return error_response(e)
        except Exception:  # noqa: BLE001 - reported on stderr, never hidden
            traceback.print_exc()
            return error_response(ApiError(500, "internal_error",
                                           "simulator error (see its stderr)"))

    def answer(self, resp, action=None):
        """Sends resp, unless a fault that lets the request apply drops,
        delays or breaks the answer (as the ServiceNow simulator does)."""
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
            return Response.html(cfg["html_status"], page(
                "Service maintenance", "<p>imper.ai is under maintenance.</p>"))
        if action == "rate_429":
            return error_response(ApiError(429, "rate_limited", "Too many requests",
                                           headers={"Retry-After": str(cfg["retry_after"])}))
        if status in (502, 503, 504):  # what a load balancer in front says
            return Response.html(status, "<html><body><h1>%d Service Unavailable</h1>"
                                         "</body></html>" % status)
        return error_response(ApiError(status, ERROR_CODE_NAMES.get(status, "internal_error"),
                                       "Simulated failure (fault injection)"))

    def route(self, path, query, raw):
        if path == API or path.startswith(API + "/"):
            return self.api(path, query, raw)
        if path.startswith("/v1/") or path == "/v1":
            self.check_api()
            raise ApiError(404, "not_found", "no such endpoint: %s" % path)
        return html_response(self.pages(path, query, raw))

    # the API

    def check_api(self):
        store = self.server.store
        left = store.outage_left()
        if left > 0:
            raise ApiError(503, "unavailable", "imper.ai is temporarily unavailable",
                           headers={"Retry-After": str(left)})
        scheme, _, key = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                key.strip().encode(), self.server.api_key.encode()):
            raise ApiError(401, "unauthorized", "missing or invalid API key",
                           headers={"WWW-Authenticate": 'Bearer realm="imper.ai"'})

    def api(self, path, query, raw):
        self.check_api()
        store, method = self.server.store, self.command
        rest = path[len(API):].strip("/")
        parts = [urllib.parse.unquote(x) for x in rest.split("/")]  # routed raw, then decoded
        if rest == "" and method == "POST":
            key = self.headers.get("Idempotency-Key")
            if key is not None and not KEY_RE.match(key):
                raise ApiError(400, "invalid_idempotency_key",
                               "Idempotency-Key: 1-255 printable ASCII characters without spaces")
            status, obj = store.create(json_body(raw), key)
            return Response.json(status, obj, [("Location", "%s/%s" % (API, obj["id"]))])
        if rest == "changes" and method == "GET":
            limit = query.get("limit", ["100"])[-1]
            if not limit.isdigit() or not 1 <= int(limit) <= 500:
                raise ApiError(400, "invalid_request", "limit: expected an integer from 1 to 500")
            return Response.json(200, store.feed(query.get("cursor", [""])[-1], int(limit)))
        if len(parts) == 1 and rest and method == "GET":
            with store.lock:
                return Response.json(200, store.api(store.get(parts[0])))
        if parts[1:] == ["cancel"] and method == "POST":
            body = json_body(raw)
            reason = want_str(body if isinstance(body, dict) else {}, "reason", "", maxlen=256)
            return Response.json(200, store.cancel(parts[0], reason))
        if rest in ("", "changes") or len(parts) == 1 or parts[1:] == ["cancel"]:
            raise ApiError(405, "method_not_allowed", "%s is not allowed on %s" % (method, path))
        raise ApiError(404, "not_found", "no such endpoint: %s" % path)

    # control

    def control(self, path, raw):
        routes = {
            ("GET", "/sim/health"): self.sim_health,
            ("GET", "/sim/faults"): self.server.faults.config,
            ("POST", "/sim/faults"): lambda: self.sim_faults(raw),
            ("GET", "/sim/stats"): self.server.stats.snapshot,
            ("POST", "/sim/stats/reset"): self.sim_stats_reset,
            ("GET", "/sim/clock"): self.server.store.clock_state,
            ("POST", "/sim/clock"): lambda: self.sim_clock(raw),
            ("POST", "/sim/outage"): lambda: self.sim_outage(raw),
            ("POST", "/sim/act"): lambda: self.act(want_keys(json_body(raw), ACT_KEYS)),
            ("GET", "/sim/outbox"): lambda: {"messages": self.outbox()},
            ("GET", "/sim/dump"): self.sim_dump,
            ("GET", "/sim/script"): self.server.script.state,
            ("POST", "/sim/script"): lambda: self.sim_script(raw),
        }
        fn = routes.get((self.command, path.rstrip("/")))
        if fn is None:
            raise ApiError(404, "not_found", "no such control endpoint: %s %s" %
                           (self.command, path))
        out = fn()
        return out if isinstance(out, Response) else Response.json(200, out)

    def sim_health(self):
        store = self.server.store
        with store.lock:
            return {"status": "ok", "now": store.now(), "verifications": len(store.v),
                    "seq": store.meta["seq"]}

    def sim_faults(self, raw):
        try:
            return self.server.faults.configure(json_body(raw))
        except FaultError as e:
            raise ApiError(400, "invalid_request", str(e))

    def sim_script(self, raw):
        try:
            return self.server.script.add(json_body(raw))
        except ScriptError as e:
            raise ApiError(400, "invalid_request", str(e))

    def sim_stats_reset(self):
        self.server.stats.reset()
        return self.server.stats.snapshot()

    def sim_clock(self, raw):
        body = want_keys(json_body(raw), ("advance", "set", "freeze", "reset"))
        for k in ("advance", "set"):
            if k in body and (not isinstance(body[k], (int, float)) or isinstance(body[k], bool)):
                raise ApiError(400, "invalid_request", "%s: expected seconds" % k)
        for k in ("freeze", "reset"):
            if not isinstance(body.get(k, False), bool):
                raise ApiError(400, "invalid_request", "%s: expected true or false" % k)
        store = self.server.store
        store.set_clock(body.get("advance"), body.get("set"), body.get("freeze"),
                        body.get("reset", False))
        return store.clock_state()

    def sim_outage(self, raw):
        secs = want_keys(json_body(raw), ("seconds",)).get("seconds")
        if not isinstance(secs, int) or isinstance(secs, bool) or secs < 0:
            raise ApiError(400, "invalid_request", "seconds: expected an integer >= 0")
        store = self.server.store
        store.set_outage(secs)
        return {"outage_until": rfc3339(store.meta["outage_until"] or None),
                "seconds": store.outage_left()}

    def sim_dump(self):
        store = self.server.store
        with store.lock:
            return {"meta": dict(store.meta), "now": store.now(),
                    "verifications": json.loads(json.dumps(
                        sorted(store.v.values(), key=lambda r: r["seq"])))}

    def act(self, b):
        store = self.server.store
        vid, do = b.get("id"), b.get("do")
        if not isinstance(vid, str):
            raise ApiError(400, "invalid_request", "id: required string")
        if do == "send":
            r = store.send(vid, b.get("recipient"), b.get("agent"), b.get("channel"))
        elif do == "start":
            r = store.start(vid)
        elif do == "complete":
            r = store.complete(vid, b.get("outcome"), b.get("risk_score"))
        elif do == "action":
            r = store.act_action(vid, b.get("status"), b.get("automated", True))
        elif do == "expire":
            r = store.expire(vid)
        elif do == "retarget":
            r = store.retarget(vid, b.get("ticket"))
        else:
            raise ApiError(400, "invalid_request",
                           "do: expected send, start, complete, action, expire or retarget")
        with store.lock:
            return store.api(r)

    def outbox(self):
        store = self.server.store
        with store.lock:
            sent = sorted((r for r in store.v.values() if r["sent_at"] is not None),
                          key=lambda r: (-r["sent_at"], -r["seq"]))
            return [{"id": r["id"], "to": r["recipient"], "channel": r["channel"],
                     "time": rfc3339(r["sent_at"]), "ticket_number": r["ticket"]["number"],
                     "link": "%s/verify/%s" % (store.base_url, r["tokens"]["verify"])}
                    for r in sent]

    # pages

    @staticmethod
    def form(raw):
        return {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace"),
                                                           keep_blank_values=True).items()}

    def pages(self, path, query, raw):
        """(status, html) of a page."""
        parts, method = path.strip("/").split("/"), self.command
        store = self.server.store
        if method == "GET" and path in ("/", "/verifications"):
            return 200, self.list_page()
        if method == "GET" and path == "/outbox":
            return 200, self.outbox_page()
        if method == "GET" and len(parts) == 2 and parts[0] == "verifications":
            with store.lock:
                r = store.v.get(parts[1])
                if r is not None:
                    return 200, self.details_page(r)
            return 404, page("Not found", "<p>No such verification.</p>")
        if method in ("GET", "POST") and len(parts) == 2 and parts[0] in ("send", "verify",
                                                                          "reset"):
            spent = store.by_token(parts[1], "spent-" + parts[0])
            if spent is not None:
                return self.spent_page(spent, parts[0])
            r = store.by_token(parts[1], parts[0])
            if r is None:
                return 404, page("Not found", '<p id="gone" class="error">'
                                 'This link is not valid.</p>')
            return getattr(self, "%s_page" % parts[0])(r, query, self.form(raw))
        return 404, page("Not found", "<p>No such page.</p>")

    def spent_page(self, r, kind):
        """A link a later send replaced: each link works only once."""
        if kind == "send":
            return 410, page("Link already used", (
                '<p id="gone" class="error">This link has already been used: a '
                'verification link was sent to %s on %s by %s. To send it again, use the '
                'newest link in the ticket.</p>') % (
                esc(r["recipient_masked"]), esc(rfc3339(r["sent_at"])),
                esc(r["initiated_by"])))
        return gone_page("Link no longer valid", "This link was replaced by a newer one. "
                         "Use the link in the most recent message.")

    def send_page(self, r, query, form):
        store = self.server.store
        with store.lock:
            if r["status"] not in EXPIRABLE:
                return gone_page("Link no longer valid", why_gone(r))
            if self.command == "GET":
                return 200, send_form(r)
        try:
            store.send(r["id"], form.get("recipient"), form.get("agent"))
        except ApiError as e:
            return e.status if e.status in (400, 429) else 409, send_form(
                r, e.message, form.get("recipient", ""), form.get("agent", ""))
        url = r["ticket"].get("url") or ""
        back = ('<p><a id="ticket-link" href="%s">Back to the ticket</a></p>' % esc(url)
                if re.match(r"https?://", url) else "")
        return 200, page("Verification link sent", (
            '<p id="sent" class="ok">A verification link was sent by %s to %s.</p>'
            '<p>Ticket <strong id="ticket-number">%s</strong>: its imper.ai Verification '
            'field shows the outcome once the requester has verified.</p>%s') % (
            esc(r["channel"]), esc(r["recipient_masked"]), esc(r["ticket"]["number"]), back))

    def verify_page(self, r, query, form):
        store = self.server.store
        with store.lock:
            if r["status"] not in ("link_sent", "in_progress"):
                return gone_page("Link no longer valid", why_gone(r))
            if self.command == "GET":
                if r["status"] == "link_sent":
                    store.start(r["id"])
                return 200, verify_form(r, query.get("outcome", [None])[-1],
                                        query.get("risk", [None])[-1])
            outcome, risk = verdict(form)
            store.complete(r["id"], outcome, risk)
            link = ""
            if outcome == "passed" and r["tokens"]["reset"]:
                link = ('<p><a id="reset-link" href="%s/reset/%s">Reset your password</a></p>' %
                        (store.base_url, r["tokens"]["reset"]))
            return 200, page("Verification complete", (
                '<p id="result" class="%s">Verification %s.</p>%s') % (
                "ok" if outcome == "passed" else "error",
                esc(STATUS_LABEL[outcome].lower()), link))

    def reset_page(self, r, query, form):
        store = self.server.store
        with store.lock:
            if r["action"]["status"] == "completed" or r["status"] != "passed":
                return gone_page("Link no longer valid",
                                 "This link has already been used. Each link works only once.")
            if store.now() >= (r["reset_expires_at"] or 0):
                return gone_page("Link expired", "This password-reset link has expired.")
            if self.command == "GET":
                return 200, reset_form(r)
            problem = password_problem(form.get("password", ""), form.get("confirm", ""))
            if problem:
                return 400, reset_form(r, problem)
            store.act_action(r["id"], "completed", True)
            return 200, page("Password changed", (
                '<p id="done" class="ok">Your password was changed. You can close this page; '
                'the service desk has been told.</p>'))

    def list_page(self):
        store = self.server.store
        with store.lock:
            rows = sorted(store.v.values(), key=lambda r: (-r["created_at"], -r["seq"]))
            trs = "".join(
                '<tr id="row-%s"><td class="ticket"><a href="/verifications/%s">%s</a></td>'
                '<td class="requester">%s<br>%s</td><td class="risk">%s</td>'
                '<td class="status">%s</td><td class="category">%s</td>'
                '<td class="initiated-by">%s</td><td class="time">%s</td></tr>' % (
                    esc(r["id"]), esc(r["id"]), esc(r["ticket"]["number"]),
                    esc((r["requester"] or {}).get("name")),
                    esc((r["requester"] or {}).get("email")),
                    esc(risk_level(r["risk_score"])), esc(STATUS_LABEL[r["status"]]),
                    esc(r["category"]), esc(r["initiated_by"]),
                    esc(rfc3339(r["completed_at"] or r["created_at"]))) for r in rows)
        return page("Verifications", (
            '<table id="verifications"><thead><tr><th>Ticket</th><th>Requester</th>'
            '<th>Risk level</th><th>Status</th><th>Category</th><th>Initiated by</th>'
            '<th>Time</th></tr></thead><tbody>%s</tbody></table>') % trs)

    @staticmethod
    def details_page(r):
        req = r["requester"] or {}
        items = (("ticket-number", "Ticket", r["ticket"]["number"]),
                 ("subject", "Subject", r["subject"]),
                 ("description", "Description", r["description"]),
                 ("requested-action", "Requested action", r["requested_action"]),
                 ("requester", "Requester", "%s <%s>" % (req.get("name") or "",
                                                         req.get("email") or "")),
                 ("status", "Status", STATUS_LABEL[r["status"]]),
                 ("risk-level", "Risk level", risk_level(r["risk_score"])),
                 ("initiated-by", "Initiated by", r["initiated_by"]),
                 ("analysis-summary", "Analysis summary", r["analysis_summary"]),
                 ("time", "Time", rfc3339(r["completed_at"] or r["created_at"])),
                 ("recommendation", "Recommendation", r["recommendation"]))
        dl = "".join('<dt>%s</dt><dd id="%s">%s</dd>' % (esc(label), i, esc(v))
                     for i, label, v in items)
        return page("Verification %s" % r["id"], "<dl>%s</dl>" % dl)

    def outbox_page(self):
        rows = "".join(
            '<tr class="message"><td class="to">%s</td><td class="channel">%s</td>'
            '<td class="time">%s</td><td class="ticket">%s</td>'
            '<td><a class="verify-link" href="%s">Verify your identity</a></td></tr>' % (
                esc(m["to"]), esc(m["channel"]), esc(m["time"]), esc(m["ticket_number"]),
                esc(m["link"])) for m in self.outbox())
        return page("Outbox", (
            '<p>Emails and SMS the simulator has "sent", newest first.</p>'
            '<table id="outbox"><thead><tr><th>To</th><th>Channel</th><th>Time</th>'
            '<th>Ticket</th><th>Link</th></tr></thead><tbody>%s</tbody></table>') % rows)


ACT_KEYS = ("id", "do", "recipient", "agent", "channel", "outcome", "risk_score", "status",
            "automated", "ticket")


class Server(LoopbackServer):
    def serve_forever(self, poll_interval=0.1):
        """A shorter poll than the default 0.5 s: SIGTERM is answered sooner."""
        super().serve_forever(poll_interval)


def json_arg(text):
    """A JSON object given inline ('{...}') or as a file name."""
    if text.lstrip().startswith("{"):
        return json.loads(text)
    with open(text) as f:
        return json.load(f)


def parse_args(argv):
    p = argparse.ArgumentParser(description="imper.ai API simulator, contract v1 (loopback only)")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1, 0 = any free port")
    p.add_argument("--port-file", help="also write the port number to this file")
    p.add_argument("--data", required=True, help="state directory (created if missing)")
    p.add_argument("--api-key", help="the accepted Bearer key (default sim-api-key)")
    p.add_argument("--api-key-file", help="read the accepted key from this file")
    p.add_argument("--seed", type=int, help="make ids, tokens and risk scores reproducible")
    p.add_argument("--daily-cap", type=int, default=5,
                   help="links sent per user per UTC day, 0 = no cap")
    p.add_argument("--link-ttl", type=int, default=86400,
                   help="seconds from create until a request times out")
    p.add_argument("--public-url", help="base URL put in links (default http://127.0.0.1:PORT)")
    p.add_argument("--faults", type=json_arg, default={}, help="fault config: JSON or file")
    p.add_argument("--fault", action="append", default=[], metavar="KEY=VALUE",
                   help="one fault key (JSON value), e.g. --fault error_rate=0.1")
    p.add_argument("--no-fsync", action="store_true", help="skip fsync (faster, not crash-safe)")
    p.add_argument("--in-memory", action="store_true",
                   help="write nothing: a restart starts empty (benchmarks)")
    p.add_argument("--verbose", action="store_true", help="log each request to stderr")
    add_tls_args(p)
    return p.parse_args(argv)


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
    try:
        key = args.api_key or "sim-api-key"
        if args.api_key_file:
            with open(args.api_key_file, encoding="utf-8") as f:
                key = f.read().rstrip("\r\n")
        faults = fault_config(args)
        store = Store(os.path.abspath(args.data), args.seed, args.link_ttl, args.daily_cap,
                      durable=not args.no_fsync, persist=not args.in_memory)
    except (OSError, ValueError) as e:
        sys.stderr.write("imperai_sim: %s\n" % e)
        return 2
    srv = Server(LOOPBACK, args.port, Handler)
    port = srv.server_address[1]
    try:
        setup_tls(srv, args)
    except (OSError, ValueError) as e:
        sys.stderr.write("imperai_sim: %s\n" % e)
        return 2
    store.base_url = (args.public_url or "%s://%s:%d" % (srv.scheme, LOOPBACK, port)).rstrip("/")
    srv.store, srv.faults, srv.stats = store, FaultInjector(), Stats()
    srv.script = Script()
    srv.api_key, srv.verbose = key, args.verbose
    try:
        srv.faults.configure(faults)
    except FaultError as e:
        sys.stderr.write("imperai_sim: %s\n" % e)
        return 2
    announce("imperai_sim", port, args.port_file and os.path.abspath(args.port_file), srv.scheme)
    # The lock is taken for good at the end: a write in progress finishes first.
    serve_until_signal(srv, store.lock.acquire)
    return 0


if __name__ == "__main__":
    sys.exit(main())
