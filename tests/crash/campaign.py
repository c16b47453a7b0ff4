#!/usr/bin/env python3
"""Crash and fault campaigns for imperai-snowd (issue #7, items 1 and 2).

A driver creates tickets in the ServiceNow simulator and walks each one
through a path (pass with the action done -> resolved or closed by the
daemon, fail, high risk, timeout, not enough questions, caller change,
closed by an agent, category moved out, a flow that is not automated),
playing the agent and the requester at imper.ai through /sim/act.

  crash mode   the daemon is SIGKILLed at seeded random moments (right after
               the k-th next write reaches a simulator -- a ServiceNow
               PATCH, an imper.ai create or cancel -- or after a short
               random delay) and restarted each time (READY=1 on
               NOTIFY_SOCKET).
  faults mode  no kills; both simulators inject 5xx, 429 bursts, resets,
               apply-then-drop, answers slower than the daemon's timeout,
               HTML pages, 4xx on polls; imper.ai has an outage of several
               minutes of its time; ServiceNow a per-hour rate limit.  The
               same work is first run without faults, for the request ratio.

Then, with the daemon running undisturbed, it waits (condition, deadline)
until every ticket shows its expected final state in the simulators and
the daemon's outbox is empty, and checks from the simulators' own records:

  * the link work note was written exactly once per request generation;
  * no work note appears twice: each (ticket, tag, G.R) at most once;
  * every outcome and action reached its ticket (the field's final text);
  * the daemon resolved/closed every automated ticket, once, and no other;
  * imper.ai holds exactly one request per (ticket, generation);
  * imperai-snowctl audit verify passes;
  faults mode also: ServiceNow requests within the daemon's request budget,
  no 4xx but 401/429 retried, requests within 1.5x of the fault-free run.

Exit 0 when every invariant holds, 1 otherwise (the offending ticket's
journal and writes are printed).  --figures FILE writes the figures as
JSON (tests/crash/reliability.py prints them as one table).

    python3 tests/crash/campaign.py                 # short crash run (make check)
    python3 tests/crash/campaign.py --full          # >= 200 kills
    python3 tests/crash/campaign.py --mode faults   # short fault run
"""
import argparse
import collections
import json
import os
import random
import re
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import SNOW_USER, Stack, wait_until  # noqa: E402

NOTE_RE = re.compile(r"^\[imper\.ai (\S+) (\d+)\.(\d+)\]")
REF_RE = re.compile(r"imperai-snow ref (\d+)\.(\d+)")
TAG_RE = re.compile(r"<[^>]*>")

REQUESTERS = ("abel.tuter", "beth.anglin", "charlie.whitherspoon", "david.loo",
              "fred.luddy", "bud.richman")

# Two automated flows (resolve; resolve and close), one that is not; no
# automatic new attempt (retry), so a timed-out walk ends there.
FLOWS = """flows:
  - name: reset-resolve
    match: { table: incident, categories: [password_reset] }
    action: password_reset
    automated: true
    close_code: "Solution provided"
    close_notes: "Password reset by {requester} after imper.ai verification {verification_id}."
    on_fail:
      assignment_group: "Service Desk Security"
      priority: 2
      work_note: "High risk detected - Reject this request"
    retry: { on: [], max: 0 }
  - name: reset-close
    match: { table: incident, categories: [account_access] }
    action: password_reset
    automated: true
    close: true
    close_code: "Solution provided"
    close_notes: "Closed after imper.ai verification {verification_id} ({number})."
    on_fail:
      assignment_group: "Service Desk Security"
      priority: 2
    retry: { on: [], max: 0 }
  - name: manual
    match: { table: incident, categories: [hardware] }
    action: none
    retry: { on: [], max: 0 }
"""

AUTOMATED = {"password_reset": "6", "account_access": "7"}
LABELS = {"passed": "Passed", "failed": "Failed", "timed_out": "Timed out",
          "not_enough_questions": "Not enough questions", "canceled": "Canceled"}

# Path -> weight.  Every path starts once the daemon has shown the link.
PATHS = {"auto_resolve": 3, "auto_close": 2, "fail": 2, "high_risk": 1, "timeout": 1,
         "not_enough": 1, "caller_change": 2, "agent_close": 2, "category_out": 1,
         "manual": 1, "close_race": 2, "caller_race": 2, "early_caller": 1, "early_out": 1,
         "early_close": 1}


def log(msg):
    sys.stdout.write("%s %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


def field_text(html):
    return TAG_RE.sub(" ", html or "").replace("&nbsp;", " ")


class Snapshot:
    """Both simulators' state at one moment (control API: no faults, no stats)."""

    def __init__(self, stack):
        dump = stack.snow.control.ok("GET", "/sim/dump")
        self.tickets = {r["sys_id"]: r for r in dump["tables"]["incident"]}
        self.journal = dump["journal"]
        self.verifs = collections.defaultdict(list)
        for v in stack.imperai.verifications():
            self.verifs[v["ticket"]["sys_id"]].append(v)

    def field(self, sid):
        return field_text(self.tickets[sid].get("u_imperai_verification", ""))

    def ref(self, sid):
        found = REF_RE.findall(self.field(sid))
        return (int(found[-1][0]), int(found[-1][1])) if found else None

    def requests(self, sid, gen):
        suffix = "/%d" % gen
        return [v for v in self.verifs.get(sid, ())
                if (v.get("idem") or {}).get("key", "").endswith(suffix)]


class Ticket:
    def __init__(self, n, sid, number, path, category, caller):
        self.n, self.sid, self.number = n, sid, number
        self.path, self.category, self.caller = path, category, caller
        self.statuses = {}            # generation -> final imper.ai status
        self.state = None             # final ServiceNow state, None: not 6/7/8
        self.resolved_by_daemon = False
        self.field = []               # texts the final field must show
        self.priority = None
        self.untracked = False        # category moved out
        self.steps = None             # the generator walking the path
        self.wait = None              # its current condition
        self.driven = False

    def __repr__(self):
        return "%s (%s, %s, path %s)" % (self.number, self.sid, self.category, self.path)


class Campaign:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.kill_rng = random.Random(args.seed * 7919 + 1)
        self.tickets = []
        self.kills = 0
        self.restarts_failed = 0
        self.stop_killing = threading.Event()
        self.killer_error = None
        self.acts = 0
        self.stack = None

    # -- setup -------------------------------------------------------------------

    def make_stack(self, faults):
        snow_http, imperai_http = {}, {}
        if faults:
            snow_http = {"timeout": self.args.timeout, "max_retries": 3,
                         "request_budget": self.args.budget}
            imperai_http = {"timeout": self.args.timeout, "max_retries": 3}
        verbose = ["--verbose"] if self.args.verbose else []
        stack = Stack(flows=FLOWS, poll=1, snow_http=snow_http, imperai_http=imperai_http,
                      write_settle=2,
                      snow_args=verbose, imperai_args=verbose)
        stack.imperai.args += ["--seed", str(self.args.seed)]
        stack.start_sims().write_config()
        return stack

    DROPPED = ("ConnectionResetError", "BrokenPipeError", "TimeoutError")

    def quiet_sim_logs(self):
        """A killed daemon or a dropped connection makes the simulators print
        socket errors: expected here.  When those are all a log holds, it is
        emptied, so the harness does not show them as a simulator bug."""
        for sim in (self.stack.snow, self.stack.imperai):
            try:
                with open(sim.log_path, errors="replace") as f:
                    text = f.read()
                raised = re.findall(r"^(\w+(?:Error|Exception))\b", text, re.M)
                if raised and all(e in self.DROPPED for e in raised):
                    open(sim.log_path, "w").close()
            except OSError:
                pass

    def close(self):
        """Stops every process; removes the directory unless --keep."""
        if self.stack is None:
            return
        for part in (self.stack.daemon, self.stack.snow, self.stack.imperai):
            if part is not None:
                part.stop()
        self.quiet_sim_logs()
        if self.args.keep:
            for part in (self.stack.daemon, self.stack.snow, self.stack.imperai):
                if part is not None:
                    part.stop()
            log("kept %s" % self.stack.dir)
        else:
            self.stack.close()

    # -- imper.ai and ServiceNow, as people -----------------------------------------

    def act(self, vid, do, **kw):
        self.acts += 1
        return self.stack.imperai.act(vid, do, **kw)

    def act_racing(self, vid, do, **kw):
        """An act that may lose a race (the request was canceled first)."""
        self.acts += 1
        status, answer = self.stack.imperai.control.call("POST", "/sim/act",
                                                         dict(kw, id=vid, do=do))
        if status not in (200, 409):
            raise AssertionError("/sim/act %s: %s %s" % (do, status, answer))
        return status

    def agent_edit(self, t, **fields):
        self.stack.snow.control.ok("POST", "/sim/update", {
            "table": "incident", "sys_id": t.sid, "fields": fields, "user": "itil.agent"})

    def create(self, n):
        path = self.rng.choices(list(PATHS), weights=list(PATHS.values()))[0]
        if path == "auto_resolve":
            category = "password_reset"
        elif path == "auto_close":
            category = "account_access"
        elif path == "manual":
            category = "hardware"
        else:
            category = self.rng.choice(("password_reset", "account_access"))
        caller = self.rng.choice(REQUESTERS)
        out = self.stack.snow.control.ok("POST", "/sim/tickets", {
            "table": "incident", "count": 1, "caller": caller,
            "fields": {"category": category, "short_description":
                       "Campaign ticket %d: please reset my password" % n}})
        rec = out["tickets"][0]
        t = Ticket(n, rec["sys_id"], rec["number"], path, category, caller)
        t.steps = getattr(self, "path_" + path)(t)
        t.wait = next(t.steps)
        self.tickets.append(t)
        return t

    # -- conditions (on a Snapshot) ------------------------------------------------

    @staticmethod
    def link_shown(t):
        """The field shows the send link of a pending request made for the
        ticket's current caller: that request (with "gen" added)."""
        def cond(s):
            ref = s.ref(t.sid)
            if ref is None or "Send Verification link" not in s.field(t.sid):
                return None
            reqs = s.requests(t.sid, ref[0])
            if len(reqs) != 1 or reqs[0]["status"] != "pending" or \
                    reqs[0]["requester"].get("user_name") != t.caller:
                return None
            return dict(reqs[0], gen=ref[0])
        return cond

    @staticmethod
    def after(seconds):
        """A random moment (not a synchronisation: any moment is right)."""
        at = time.monotonic() + seconds
        return lambda s: time.monotonic() >= at

    @staticmethod
    def shows(t, text):
        return lambda s: text in s.field(t.sid)

    def maybe(self, p):
        return self.rng.random() < p

    # -- the paths (generators: yield a condition, get the snapshot's answer) -------

    def send(self, t, v):
        channel = self.rng.choice(("email", "sms"))
        recipient = "user%d@example.org" % t.n if channel == "email" else "+1555%07d" % t.n
        self.act(v["id"], "send", recipient=recipient, agent="Ivy Agent", channel=channel)

    def walk_to_outcome(self, t, v, outcome, risk=None, action=None):
        self.send(t, v)
        if self.maybe(0.4):
            yield self.shows(t, "Verification link sent")
        if self.maybe(0.3):
            self.act(v["id"], "start")
        kw = {"outcome": outcome}
        if risk is not None:
            kw["risk_score"] = risk
        self.act(v["id"], "complete", **kw)
        if action is not None:
            if self.maybe(0.5):
                yield self.shows(t, "Verification Outcome:")
            self.act(v["id"], "action", status=action)

    def expect_pass(self, t, gen):
        t.statuses[gen] = "passed"
        t.field += ["Verification Outcome: Passed", "Risk level: Verified",
                    "Password reset completed"]
        if t.category in AUTOMATED:
            t.state = AUTOMATED[t.category]
            t.resolved_by_daemon = True
            t.field.append("Ticket %s automatically by imperai-snow"
                           % ("closed" if t.state == "7" else "resolved"))

    def path_auto_resolve(self, t):
        v = yield self.link_shown(t)
        yield from self.walk_to_outcome(t, v, "passed", self.rng.randint(0, 3), "completed")
        self.expect_pass(t, 1)

    path_auto_close = path_auto_resolve

    def path_manual(self, t):
        v = yield self.link_shown(t)
        yield from self.walk_to_outcome(t, v, "passed", self.rng.randint(0, 3))
        t.statuses[1] = "passed"
        t.field += ["Verification Outcome: Passed", "Risk level: Verified"]

    def path_fail(self, t):
        v = yield self.link_shown(t)
        yield from self.walk_to_outcome(t, v, "failed")
        t.statuses[1] = "failed"
        t.field += ["Verification Outcome: Failed", "Risk level: High"]
        t.priority = "2"

    def path_high_risk(self, t):
        v = yield self.link_shown(t)
        yield from self.walk_to_outcome(t, v, "passed", self.rng.randint(7, 10), "completed")
        t.statuses[1] = "passed"
        t.field += ["Verification Outcome: Passed", "Risk level: High",
                    "Password reset completed"]
        t.priority = "2"

    def path_timeout(self, t):
        v = yield self.link_shown(t)
        if self.maybe(0.6):
            self.send(t, v)
            if self.maybe(0.5):
                yield self.shows(t, "Verification link sent")
        self.act(v["id"], "expire")
        t.statuses[1] = "timed_out"
        t.field.append("Verification Outcome: Timed out")

    def path_not_enough(self, t):
        v = yield self.link_shown(t)
        yield from self.walk_to_outcome(t, v, "not_enough_questions")
        t.statuses[1] = "not_enough_questions"
        t.field.append("Verification Outcome: Not enough questions")

    def path_caller_change(self, t):
        v = yield self.link_shown(t)
        if self.maybe(0.5):
            self.send(t, v)
            if self.maybe(0.5):
                yield self.shows(t, "Verification link sent")
        self.change_caller(t)
        t.statuses[1] = "canceled"
        v = yield self.link_shown(t)
        yield from self.walk_to_outcome(t, v, "passed", self.rng.randint(0, 3), "completed")
        self.expect_pass(t, v["gen"])

    def change_caller(self, t):
        t.caller = self.rng.choice([u for u in REQUESTERS if u != t.caller])
        self.agent_edit(t, caller_id=t.caller)

    def agent_close(self, t):
        t.state = self.rng.choice(("6", "7", "8"))
        fields = {"state": t.state}
        if t.state in ("6", "7"):
            fields.update(close_code="Solution provided", close_notes="Done by the agent.")
        self.agent_edit(t, **fields)

    def path_close_race(self, t):
        """The requester finishes while the agent closes the ticket: the
        field must end showing what imper.ai holds, whoever won."""
        v = yield self.link_shown(t)
        self.send(t, v)
        if self.maybe(0.5):
            yield self.shows(t, "Verification link sent")
        outcome = self.rng.choice(("passed", "failed"))
        steps = [lambda: self.act_racing(v["id"], "complete", outcome=outcome),
                 lambda: self.agent_close(t)]
        self.rng.shuffle(steps)
        steps[0]()
        if self.maybe(0.5):
            yield self.after(self.rng.uniform(0, 1.5))
        steps[1]()

    def path_caller_race(self, t):
        """The requester passes while the caller changes: the old result
        never carries over; the new caller is verified anew."""
        v = yield self.link_shown(t)
        self.send(t, v)
        steps = [lambda: self.act_racing(v["id"], "complete", outcome="passed", risk_score=1),
                 lambda: self.change_caller(t)]
        self.rng.shuffle(steps)
        steps[0]()
        if self.maybe(0.5):
            yield self.after(self.rng.uniform(0, 1.5))
        steps[1]()
        v = yield self.link_shown(t)
        yield from self.walk_to_outcome(t, v, "passed", self.rng.randint(0, 3), "completed")
        self.expect_pass(t, v["gen"])

    def path_early_caller(self, t):
        """The caller changes at once, maybe before the daemon saw the ticket
        or before its request was answered."""
        yield self.after(self.rng.uniform(0, 2.0))
        self.change_caller(t)
        v = yield self.link_shown(t)
        yield from self.walk_to_outcome(t, v, "passed", self.rng.randint(0, 3), "completed")
        self.expect_pass(t, v["gen"])

    def path_early_out(self, t):
        yield self.after(self.rng.uniform(0, 2.0))
        self.agent_edit(t, category="inquiry")
        t.untracked = True

    def path_early_close(self, t):
        yield self.after(self.rng.uniform(0, 2.0))
        self.agent_close(t)

    def path_agent_close(self, t):
        v = yield self.link_shown(t)
        if self.maybe(0.5):
            self.send(t, v)
            if self.maybe(0.5):
                yield self.shows(t, "Verification link sent")
        self.agent_close(t)
        t.statuses[1] = "canceled"
        t.field += ["Verification Outcome: Canceled",
                    "The ticket was closed before the verification completed."]

    def path_category_out(self, t):
        v = yield self.link_shown(t)
        if self.maybe(0.5):
            self.send(t, v)
            if self.maybe(0.5):
                yield self.shows(t, "Verification link sent")
        self.agent_edit(t, category="inquiry")
        t.statuses[1] = "canceled"
        t.field.append("No verification needed")

    # -- the final picture ------------------------------------------------------------

    @staticmethod
    def generations(s, t):
        """imper.ai's requests for ticket t, by generation (from the
        Idempotency-Key instance/table/sys_id/generation)."""
        out = collections.defaultdict(list)
        for v in s.verifs.get(t.sid, ()):
            key = (v.get("idem") or {}).get("key", "")
            try:
                out[int(key.rsplit("/", 1)[-1])].append(v)
            except ValueError:
                out[-1].append(v)
        return out

    def final_problems(self, s, t):
        """What keeps ticket t from its final state (empty: reached).  What
        the path fixed is checked as expected; the rest against what
        imper.ai holds (the truth whoever won a race)."""
        if not t.driven:
            return ["not driven to its end yet"]
        out = []
        rec = s.tickets.get(t.sid)
        gens = self.generations(s, t)
        last = max(gens) if gens else 0
        if sorted(gens) != list(range(1, last + 1)):
            out.append("imper.ai holds requests for generations %s" % sorted(gens))
        for g, reqs in sorted(gens.items()):
            if len(reqs) != 1:
                out.append("imper.ai holds %d requests for generation %d" % (len(reqs), g))
            elif g < last and reqs[0]["status"] not in LABELS:
                out.append("superseded request of generation %d is still %s"
                           % (g, reqs[0]["status"]))
        for g, want in sorted(t.statuses.items()):
            got = gens[g][0]["status"] if len(gens.get(g, ())) == 1 else None
            if got != want:
                out.append("imper.ai request of generation %d is %s, expected %s" % (g, got, want))
        ref, text = s.ref(t.sid), s.field(t.sid)
        if last == 0:
            if not t.path.startswith("early_") or t.path == "early_caller":
                out.append("no request at imper.ai")
            elif ref is not None:
                out.append("the field shows ref %s but imper.ai holds no request" % (ref,))
        else:
            final = gens[last][0]["status"]
            if ref is None or ref[0] != last:
                out.append("field shows ref %s, the last generation is %d" % (ref, last))
            if final not in LABELS:
                out.append("the last request (generation %d) is still %s" % (last, final))
            elif final == "canceled":
                if "Verification Outcome: Canceled" not in text and \
                        "No verification needed" not in text:
                    out.append("field does not show the cancellation")
            elif "Verification Outcome: %s" % LABELS[final] not in text:
                out.append("field does not show imper.ai's outcome %s" % LABELS[final])
        for want in t.field:
            if want not in text:
                out.append("field lacks %r" % want)
        if t.untracked and last > 0 and "No verification needed" not in text:
            out.append("field does not say the ticket left the verification categories")
        state = rec.get("state")
        if t.state is None and state in ("6", "7", "8"):
            out.append("ServiceNow state %s, expected open" % state)
        elif t.state is not None and state != t.state:
            out.append("ServiceNow state %s, expected %s" % (state, t.state))
        if t.priority is not None and rec.get("priority") != t.priority:
            out.append("priority %s, expected %s (on_fail)" % (rec.get("priority"), t.priority))
        return out

    def outbox(self):
        st = self.stack.ctl_json("status", "--json")
        ob = st.get("outbox", {})
        return ob.get("pending", -1), ob.get("parked", 0)

    # -- the killer ---------------------------------------------------------------------

    def writes_seen(self):
        """Writes the simulators have received: ServiceNow PATCHes, imper.ai
        creates and cancels."""
        snow = self.stack.snow.control.ok("GET", "/sim/stats")["requests"]
        imp = self.stack.imperai.control.ok("GET", "/sim/stats")["requests"]
        return (sum(n for k, n in snow.items() if k.startswith("PATCH ")) +
                sum(n for k, n in imp.items() if k.startswith("POST ")))

    def killer(self):
        """SIGKILL at seeded random moments, restart, until told to stop."""
        rng, d = self.kill_rng, self.stack.daemon
        try:
            while not self.stop_killing.is_set():
                mode = rng.choice(("writes", "writes", "delay", "short"))
                if mode == "writes":
                    target = self.writes_seen() + rng.randint(1, 4)
                    deadline = time.monotonic() + rng.uniform(1.0, 4.0)
                    while (not self.stop_killing.is_set() and time.monotonic() < deadline
                           and self.writes_seen() < target):
                        time.sleep(0.005)
                else:
                    delay = rng.uniform(0.05, 1.5) if mode == "delay" else rng.uniform(0, 0.15)
                    self.stop_killing.wait(delay)
                if self.stop_killing.is_set():
                    break
                d.kill()
                self.kills += 1
                if rng.random() < 0.3:  # the world moves on while it is down
                    self.stop_killing.wait(rng.uniform(0.05, 0.6))
                d.start(self.stack.env(), timeout=60)
        except Exception as e:  # reported by the main thread
            self.killer_error = e
        finally:
            if not d.running():
                try:
                    d.start(self.stack.env(), timeout=60)
                except Exception as e:
                    self.killer_error = self.killer_error or e

    # -- driving ---------------------------------------------------------------------------

    def drive(self, n_tickets, kills_target, deadline_s):
        """Creates tickets a few at a time and walks them; returns when all
        are driven and (with kills) enough kills happened."""
        active_max = self.args.active
        deadline = time.monotonic() + deadline_s
        created = 0
        last_report = time.monotonic()
        while True:
            if self.killer_error is not None:
                raise AssertionError("killer failed: %s\n%s" % (self.killer_error,
                                                               self.stack.daemon.log()))
            active = [t for t in self.tickets if not t.driven]
            want_more = created < n_tickets or (kills_target and self.kills < kills_target)
            while want_more and len(active) < active_max:
                created += 1
                active.append(self.create(created))
                want_more = created < n_tickets or (kills_target and self.kills < kills_target)
            if not active and not want_more:
                return
            s = Snapshot(self.stack)
            progressed = False
            for t in active:
                try:
                    value = t.wait(s)
                except KeyError:
                    value = None
                if not value:
                    continue
                progressed = True
                try:
                    t.wait = t.steps.send(value)
                except StopIteration:
                    t.driven = True
            now = time.monotonic()
            if now > deadline:
                stuck = [t for t in self.tickets if not t.driven]
                raise AssertionError("tickets not driven within %d s: %s\n%s" % (
                    deadline_s, ", ".join(map(repr, stuck[:10])), self.stack.logs()))
            if now - last_report > 15:
                log("  %d tickets created, %d driven, %d kills" % (
                    created, sum(t.driven for t in self.tickets), self.kills))
                last_report = now
            if not progressed:
                time.sleep(0.05)

    def quiesce(self, timeout):
        """Every ticket at its expected final state and the outbox empty."""
        last = {}

        def done():
            s = Snapshot(self.stack)
            bad = {t.number: p for t in self.tickets for p in [self.final_problems(s, t)] if p}
            last.clear()
            last.update(bad)
            if bad:
                return False
            pending, parked = self.outbox()
            if pending or parked:
                last["outbox"] = ["%d pending, %d parked" % (pending, parked)]
                return False
            return True

        try:
            wait_until(done, timeout, "every ticket's final state and an empty outbox",
                       interval=0.25)
            return {}
        except AssertionError:
            return dict(last)

    # -- invariants ---------------------------------------------------------------------------

    def check(self, unreached):
        st = self.stack
        s = Snapshot(st)
        writes = st.snow.control.ok("GET", "/sim/writes?table=incident")
        by_ticket = collections.defaultdict(list)
        for w in writes:
            by_ticket[w["sys_id"]].append(w)
        notes = collections.defaultdict(list)
        for j in s.journal:
            if j.get("element") == "work_notes":
                notes[j.get("element_id")].append(j)
        fig = {"tickets": len(self.tickets), "writes": 0, "duplicates": 0, "losses": 0,
               "notes": 0}
        bad = collections.OrderedDict()

        def problem(t, msg):
            bad.setdefault(t.sid, []).append(msg)

        for t in self.tickets:
            ours = [w for w in by_ticket[t.sid] if w.get("user") == SNOW_USER]
            fig["writes"] += len(ours)
            links = collections.Counter()
            resolves = 0
            for w in ours:
                m = NOTE_RE.match(w["fields"].get("work_notes", ""))
                if m and m.group(1) == "link":
                    links[int(m.group(2))] += 1
                if w["fields"].get("state") in ("6", "7"):
                    resolves += 1
            gens = self.generations(s, t)
            last = max(gens) if gens else 0
            for g in sorted(set(gens) | set(links)):
                known = g in gens
                want = 1 if known and g == last and gens[g][0]["status"] != "canceled" else None
                if links[g] > 1 or (want is not None and links[g] != want) or not known:
                    problem(t, "link note of generation %d written %d times" % (g, links[g]))
                    if links[g] > 1:
                        fig["duplicates"] += links[g] - 1
                    elif known:
                        fig["losses"] += 1
            seen = collections.Counter()
            for j in notes[t.sid]:
                m = NOTE_RE.match(j["value"])
                if m:
                    seen[m.groups()] += 1
            fig["notes"] += sum(seen.values())
            for key, n in seen.items():
                if n > 1:
                    problem(t, "work note [imper.ai %s %s.%s] appears %d times" % (key + (n,)))
                    fig["duplicates"] += n - 1
            want = 1 if t.resolved_by_daemon else 0
            if resolves != want:
                problem(t, "the daemon resolved/closed it %d times, expected %d" % (resolves,
                                                                                    want))
                fig["duplicates" if resolves > want else "losses"] += 1
            for g, reqs in gens.items():
                if len(reqs) > 1:
                    fig["duplicates"] += len(reqs) - 1
            for p in self.final_problems(s, t):
                problem(t, p)
                fig["losses"] += 1
        if "outbox" in unreached:
            bad.setdefault("outbox", []).extend(unreached["outbox"])
            fig["losses"] += 1
        audit = st.ctl("audit", "verify")
        fig["audit_ok"] = audit.returncode == 0
        if audit.returncode != 0:
            bad.setdefault("audit", []).append("imperai-snowctl audit verify: exit %d: %s%s"
                                               % (audit.returncode, audit.stdout, audit.stderr))
        return fig, bad, by_ticket, notes

    def report_problems(self, bad, by_ticket, notes):
        by_sid = {t.sid: t for t in self.tickets}
        for sid, msgs in bad.items():
            t = by_sid.get(sid)
            log("FAIL %s" % (t if t else sid))
            for m in msgs:
                log("    %s" % m)
            if t is None:
                continue
            log("  journal:")
            for j in sorted(notes[sid], key=lambda j: j.get("_created_ms", 0)):
                log("    %s %s" % (j.get("sys_created_on"), j["value"].split("\n")[0]))
            log("  writes:")
            for w in by_ticket[sid]:
                f = dict(w["fields"])
                fld = f.pop("u_imperai_verification", None)
                note = f.pop("work_notes", "")
                log("    %s by %s mod %s note=%r ref=%s other=%s" % (
                    w["method"], w.get("user"), w["mod_count"], note.split("\n")[0],
                    REF_RE.findall(field_text(fld))[-1:] if fld else "-", f))
        log(self.stack.daemon.log(60))

    # -- the runs ------------------------------------------------------------------------------

    def run_crash(self):
        a = self.args
        self.stack = self.make_stack(faults=False)
        try:
            self.stack.start_daemon()
            log("crash campaign: seed %d, %d tickets, >= %d kills, state in %s"
                % (a.seed, a.tickets, a.kills, self.stack.dir))
            t0 = time.monotonic()
            killer = threading.Thread(target=self.killer, daemon=True)
            if a.kills > 0:
                killer.start()
            try:
                self.drive(a.tickets, a.kills, a.deadline)
            finally:
                self.stop_killing.set()
                if a.kills > 0:
                    killer.join(120)
            log("driven: %d tickets, %d kills in %.0f s; waiting for quiescence"
                % (len(self.tickets), self.kills, time.monotonic() - t0))
            unreached = self.quiesce(a.quiesce)
            if a.inject:
                self.inject(a.inject)
            fig, bad, by_ticket, notes = self.check(unreached)
            fig.update(kills=self.kills, seed=a.seed, mode="crash",
                       seconds=round(time.monotonic() - t0, 1))
            return self.finish(fig, bad, by_ticket, notes)
        finally:
            self.close()

    def inject(self, what):
        """Breaks an invariant on purpose, behind the daemon's back, to show
        the checks catch it: "duplicate" writes a ticket's link note again
        (as the integration user), "loss" puts an older field back."""
        s = Snapshot(self.stack)
        t = next(t for t in self.tickets if s.ref(t.sid))
        w = [w for w in self.stack.snow.control.ok(
            "GET", "/sim/writes?table=incident&sys_id=" + t.sid)
            if w.get("user") == SNOW_USER and "u_imperai_verification" in w["fields"]]
        fields = {"u_imperai_verification": w[0]["fields"]["u_imperai_verification"]}
        if what == "duplicate":
            fields["work_notes"] = w[0]["fields"]["work_notes"]
        self.stack.snow.control.ok("POST", "/sim/update", {
            "table": "incident", "sys_id": t.sid, "fields": fields, "user": SNOW_USER})
        log("injected a %s into %s" % (what, t.number))

    def finish(self, fig, bad, by_ticket, notes):
        if bad:
            self.report_problems(bad, by_ticket, notes)
        fig["ok"] = not bad
        log("figures: " + ", ".join("%s=%s" % kv for kv in sorted(fig.items())
                                    if not isinstance(kv[1], (dict, list))))
        if self.args.figures:
            with open(self.args.figures, "w") as f:
                json.dump(fig, f, indent=1, sort_keys=True)
        if bad:
            log("FAILED: %d problem(s)" % sum(len(m) for m in bad.values()))
            return 1
        log("OK")
        return 0


def parse_args(argv, mode="crash"):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("crash", "faults"), default=mode)
    p.add_argument("--full", action="store_true", help="the full run (make reliability)")
    p.add_argument("--seed", type=int, default=int(os.environ.get("CAMPAIGN_SEED", "1")))
    p.add_argument("--tickets", type=int)
    p.add_argument("--kills", type=int)
    p.add_argument("--active", type=int, default=8, help="tickets walked at once")
    p.add_argument("--deadline", type=float, help="seconds to drive every ticket")
    p.add_argument("--quiesce", type=float, default=120.0)
    p.add_argument("--timeout", type=int, default=3, help="faults: the daemon's timeout")
    p.add_argument("--budget", type=int, default=0, help="faults: servicenow.request_budget")
    p.add_argument("--outage", type=int,
                   help="faults: seconds of imper.ai's time it is down (300; short: 15)")
    p.add_argument("--figures", help="write the figures as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--inject", choices=("duplicate", "loss"),
                   help="self-test: break an invariant after quiescence; the run must fail")
    p.add_argument("--verbose", action="store_true", help="the simulators log every request")
    a = p.parse_args(argv)
    if a.tickets is None:
        a.tickets = (150 if a.full else 16) if a.mode == "crash" else (150 if a.full else 16)
    if a.kills is None:
        a.kills = (200 if a.full else 20) if a.mode == "crash" else 0
    if a.outage is None:
        a.outage = 300 if a.full else 15
    if a.deadline is None:
        a.deadline = 1800.0 if a.full else 300.0
    return a


def main(argv=None, mode="crash"):
    a = parse_args(sys.argv[1:] if argv is None else argv, mode)
    c = Campaign(a)
    if a.mode == "crash":
        return c.run_crash()
    from faults import run_faults  # noqa: E402 - the fault campaign's own module
    return run_faults(c)


if __name__ == "__main__":
    sys.exit(main())
