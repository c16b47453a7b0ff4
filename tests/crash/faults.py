#!/usr/bin/env python3
"""Fault campaign for imperai-snowd (issue #7, item 2): the crash
campaign's driver (tests/crash/campaign.py) with the simulators' faults on
instead of kills.

The same work (same seed: same tickets, same paths) runs twice, each time
against fresh simulators and a fresh daemon:

  baseline  no faults;
  faulted   on both simulators 10% 5xx, 5% 429 bursts with Retry-After, 2%
            resets, 2% apply-then-drop, 1% answers slower than the daemon's
            timeout (3 s; slow_ms 4 s), 2% HTML maintenance pages, and 5% of
            the polls (ServiceNow list, imper.ai change feed) answered
            400/403/404; an imper.ai outage of several minutes of its time
            (300 s, passing in 20 s; the short run: 15 s in 10 s);
            ServiceNow's per-user hourly rate limit set to the daemon's
            request budget, and for a while far below it (just before the
            instance's hour ends, so Retry-After is short).

Besides the crash campaign's invariants (link once per generation, no work
note twice, every outcome and action on its ticket, automated tickets and
only those resolved, one imper.ai request per generation, audit chain) it
checks, from the simulators' /sim/stats:

  * ServiceNow requests <= servicenow.http.request_budget (the run is
    shorter than an hour, so the total is the rolling-hour figure);
  * no injected 4xx (other than 401/429) was retried: client_error_repeats
    is 0 on both simulators;
  * requests within 1.5x of the fault-free run for the same work: the
    faulted run's requests (both services, until quiescence) over what the
    fault-free daemon makes for the same work in the same time: its own
    run's requests plus, for the rest of the faulted run's duration, its
    idle polling rate (measured over a 5 s window after its run).

    python3 tests/crash/faults.py            # short (make check)
    python3 tests/crash/faults.py --full     # make reliability
"""
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import campaign  # noqa: E402
from campaign import Campaign, log  # noqa: E402

POLLS = ("GET /api/now/table/incident", "GET /v1/verification-requests/changes")
RATIO_MAX = 1.5


def fault_config(seed, path_prefix, poll_path):
    return {"error_rate": 0.10, "error_codes": [500, 502, 503],
            "rate_429": 0.05, "burst_429": 2, "retry_after": 1,
            "reset_rate": 0.02, "apply_then_drop_rate": 0.02,
            "slow_rate": 0.01, "slow_ms": 4000, "html_rate": 0.02,
            "client_error_rate": 0.05, "client_error_codes": [400, 403, 404],
            "client_error_methods": ["GET"], "client_error_path": poll_path,
            "seed": seed, "path_prefix": path_prefix}


class Weather:
    """The faults over a run: on from the start; once a quarter of the
    tickets exist, an imper.ai outage, and once half exist, a tight
    ServiceNow rate limit (each phase in its own thread).  A phase not yet
    run when the driving ends still runs: the daemon meets it polling."""

    def __init__(self, c, budget, outage_s, step_s):
        self.c, self.budget, self.outage_s, self.step_s = c, budget, outage_s, step_s
        self.stop = threading.Event()
        self.error = None
        self.log = []
        self.threads = [threading.Thread(target=self.guard, args=(fn,), daemon=True)
                        for fn in (self.outage, self.rate_limit)]

    def start(self):
        st, seed = self.c.stack, self.c.args.seed
        st.snow.control.ok("POST", "/sim/faults", fault_config(seed, "/api/",
                                                             "/api/now/table/incident"))
        st.imperai.control.ok("POST", "/sim/faults", fault_config(
            seed + 1, "/v1/", "/v1/verification-requests/changes"))
        st.snow.control.ok("POST", "/sim/ratelimit", {"limit": self.budget, "lag": 10})
        for t in self.threads:
            t.start()

    def wait_tickets(self, n):
        """Until n tickets exist, or the driving is over."""
        while not self.stop.is_set() and len(self.c.tickets) < n:
            self.stop.wait(0.2)

    def guard(self, fn):
        try:
            fn()
        except Exception as e:  # reported by the main thread
            self.error = self.error or e

    def outage(self):
        """imper.ai down for outage_s seconds of its time, which passes in
        ten steps while the daemon keeps trying."""
        st = self.c.stack
        self.wait_tickets(max(1, self.c.args.tickets // 4))
        st.imperai.control.ok("POST", "/sim/outage", {"seconds": self.outage_s})
        for _ in range(10):
            time.sleep(self.step_s)  # the outage's pace, not a synchronisation
            st.imperai.control.ok("POST", "/sim/clock", {"advance": self.outage_s / 10.0})
        st.imperai.control.ok("POST", "/sim/outage", {"seconds": 0})
        self.log.append("imper.ai outage of %d s (its time) over %.0f s"
                        % (self.outage_s, 10 * self.step_s))

    def rate_limit(self):
        """The instance's own limit far below the budget -- as if a few
        hundred an hour were nearly used up -- 20 s before its hour ends:
        the daemon meets real 429s with a short Retry-After."""
        st = self.c.stack
        self.wait_tickets(max(2, self.c.args.tickets // 2))
        now = st.snow.control.ok("GET", "/sim/clock")["now"]
        # forward only: a clock set back stamps changes behind the daemon's
        # poll cursor (further than its overlap), which no instance does
        st.snow.control.ok("POST", "/sim/clock", {"advance": (3600 - now % 3600 - 20) % 3600})
        st.snow.control.ok("POST", "/sim/ratelimit", {"limit": 20, "lag": 2})
        self.log.append("ServiceNow limit 20/h for the last 20 s of its hour")
        # Back to the budget before that hour ends: in the next one the
        # instance would rightly say "retry in an hour".
        time.sleep(15)  # within the instance's hour, not a synchronisation
        st.snow.control.ok("POST", "/sim/ratelimit", {"limit": self.budget, "lag": 10})

    def end(self):
        """The driving is over: the phases finish, then the faults end."""
        self.stop.set()
        for t in self.threads:
            t.join(120)
            if t.is_alive():
                self.error = self.error or AssertionError("the fault schedule did not end")
        for sim in (self.c.stack.snow, self.c.stack.imperai):
            sim.control.ok("POST", "/sim/faults", {})
        self.c.stack.imperai.control.ok("POST", "/sim/outage", {"seconds": 0})


def requests(stats):
    reqs = stats["requests"]
    polls = sum(reqs.get(k, 0) for k in POLLS)
    return {"total": stats["total"], "polls": polls, "work": stats["total"] - polls}


def one_run(args, faulted):
    c = Campaign(args)
    c.stack = c.make_stack(faults=True)
    weather = None
    try:
        c.stack.start_daemon()
        log("%s run: seed %d, %d tickets, state in %s" % (
            "faulted" if faulted else "baseline", args.seed, args.tickets, c.stack.dir))
        t0 = time.monotonic()
        if faulted:
            weather = Weather(c, args.budget, args.outage, 2.0 if args.full else 1.0)
            weather.start()
        try:
            c.drive(args.tickets, 0, args.deadline)
        finally:
            if weather is not None:
                weather.end()
        duration = time.monotonic() - t0
        log("driven: %d tickets in %.0f s; waiting for quiescence" % (len(c.tickets), duration))
        unreached = c.quiesce(args.quiesce)
        duration = time.monotonic() - t0
        fig, bad, by_ticket, notes = c.check(unreached)
        if weather is not None and weather.error is not None:
            bad.setdefault("weather", []).append("fault schedule failed: %r" % weather.error)
        snow = c.stack.snow.control.ok("GET", "/sim/stats")
        imp = c.stack.imperai.control.ok("GET", "/sim/stats")
        status = c.stack.ctl_json("status", "--json")
        idle = None
        if not faulted:
            # The requests an idle daemon makes per second (its polls), measured
            # over a window: they extend the baseline to the faulted run's time.
            window = 5.0
            time.sleep(window)  # a measurement window, not a synchronisation
            after = (c.stack.snow.control.ok("GET", "/sim/stats")["total"] +
                     c.stack.imperai.control.ok("GET", "/sim/stats")["total"])
            idle = (after - snow["total"] - imp["total"]) / window
        return c, dict(fig, seconds=round(duration, 1), snow=snow, imperai=imp, idle_rate=idle,
                       daemon=status, weather=weather.log if weather else []), \
            (bad, by_ticket, notes)
    except BaseException:
        c.close()
        raise


def run_faults(c0):
    a = c0.args
    if not a.budget:
        a.budget = 3000 if a.full else 800
    base_c, base, base_bad = one_run(a, faulted=False)
    try:
        if base_bad[0]:
            base_c.report_problems(*base_bad)
            log("FAILED: the fault-free run already breaks an invariant")
            return 1
    finally:
        base_c.close()
    c, fig, (bad, by_ticket, notes) = one_run(a, faulted=True)
    try:
        b_snow, b_imp = requests(base["snow"]), requests(base["imperai"])
        f_snow, f_imp = requests(fig["snow"]), requests(fig["imperai"])
        b_work = b_snow["work"] + b_imp["work"]
        f_total = f_snow["total"] + f_imp["total"]
        # What the fault-free daemon makes for the same work in the same time:
        # its run, then idle polling until the faulted run's duration.
        expected = b_snow["total"] + b_imp["total"] + base["idle_rate"] * max(
            0.0, fig["seconds"] - base["seconds"])
        ratio = f_total / expected if expected else 0.0
        work_ratio = (f_snow["work"] + f_imp["work"]) / b_work if b_work else 0.0
        raw_ratio = f_total / (b_snow["total"] + b_imp["total"])
        faults = {}
        for sim in ("snow", "imperai"):
            for k, n in fig[sim].get("faults", {}).items():
                faults["%s %s" % (sim, k)] = n
        repeats = fig["snow"].get("client_error_repeats", 0) + \
            fig["imperai"].get("client_error_repeats", 0)
        snow_429 = fig["snow"]["by_status"].get("429", 0) - fig["snow"]["faults"].get(
            "rate_429", 0)
        overruns = max(0, f_snow["total"] - a.budget)
        if overruns:
            bad.setdefault("budget", []).append(
                "ServiceNow requests %d over the budget %d" % (f_snow["total"], a.budget))
        if repeats:
            bad.setdefault("4xx", []).append("%d injected 4xx answers were retried" % repeats)
        if ratio > RATIO_MAX:
            bad.setdefault("requests", []).append(
                "requests %.2fx the fault-free run's for the same work and time (max %.1fx)"
                % (ratio, RATIO_MAX))
        log("baseline: %.0f s, ServiceNow %d (%d polls), imper.ai %d (%d polls)" % (
            base["seconds"], b_snow["total"], b_snow["polls"], b_imp["total"], b_imp["polls"]))
        log("faulted:  %.0f s, ServiceNow %d (%d polls), imper.ai %d (%d polls)" % (
            fig["seconds"], f_snow["total"], f_snow["polls"], f_imp["total"], f_imp["polls"]))
        for sim in ("snow", "imperai"):
            keys = sorted(set(base[sim]["requests"]) | set(fig[sim]["requests"]))
            log("  %s requests, baseline -> faulted: %s" % (sim, ", ".join(
                "%s %d->%d" % (k, base[sim]["requests"].get(k, 0), fig[sim]["requests"].get(k, 0))
                for k in keys)))
        log("weather: " + "; ".join(fig["weather"]))
        log("faults injected: " + ", ".join("%s=%d" % kv for kv in sorted(faults.items())))
        d = fig["daemon"]
        log("daemon: ServiceNow budget used %s of %d, budget waits %s, 429s %s; "
            "instance 429s (its own limit) %d" % (
                d.get("snow_budget_used", "?"), a.budget, d.get("snow_budget_waits", "?"),
                d.get("snow_rate_limited", "?"), snow_429))
        log("ratio %.2f: %d requests against %.0f fault-free for the same work and time "
            "(idle polling %.2f/s); work requests alone %.2f, raw %.2f" % (
                ratio, f_total, expected, base["idle_rate"], work_ratio, raw_ratio))
        log("4xx retried %d; budget overruns %d" % (repeats, overruns))
        out = {k: v for k, v in fig.items() if k not in ("snow", "imperai", "daemon",
                                                         "idle_rate")}
        out.update(mode="faults", seed=a.seed, kills=0, faults=faults,
                   requests_snow=f_snow["total"], requests_imperai=f_imp["total"],
                   baseline_snow=b_snow["total"], baseline_imperai=b_imp["total"],
                   baseline_seconds=base["seconds"], ratio=round(ratio, 3),
                   work_ratio=round(work_ratio, 3), raw_ratio=round(raw_ratio, 3),
                   retried_4xx=repeats, budget=a.budget, budget_overruns=overruns,
                   instance_429=snow_429)
        return c.finish(out, bad, by_ticket, notes)
    finally:
        c.close()


def main(argv=None):
    return campaign.main(argv, mode="faults")


if __name__ == "__main__":
    sys.exit(main())
