#!/usr/bin/env python3
"""Soak (issue #7, item 5): the daemon runs SOAK_SECONDS (default 600) of
real time with tickets flowing -- created, verified, passed, failed, reset,
timed out -- while the simulators' clocks move ten minutes a round, so the
run covers days of simulated time.  Every SOAK_SAMPLE seconds (default 10)
it samples the daemon's resident memory (/proc/PID/status VmRSS) and its
open files (/proc/PID/fd), prints the samples, and fails if either grows
after the warm-up (the first fifth of the run):

- anonymous RSS (RssAnon: VmRSS less the touched pages of the LMDB map,
  which grow with the data as they should): the mean of the last quarter
  of the samples may exceed the mean of the first quarter (after warm-up)
  by at most 10% + 1 MiB;
- open files: a leaked descriptor raises the floor, while connections in
  flight (a PATCH always opens a fresh one) move the peaks; so the lowest
  count of the last quarter may exceed the lowest of the first quarter by
  at most 2, and no sample may exceed that first floor by more than 16.

    make reliability                      # 10 minutes (among the rest)
    SOAK_SECONDS=60 python3 tests/integration/soak.py [--figures FILE]

--figures FILE writes the run's figures as JSON (make reliability's table):
duration, tickets, the RssAnon means and the open-file floors of the first
and last quarters after warm-up, and the verdict.

The daemon's own time is the wall clock, so the run takes real minutes.
A sanitizer build keeps freed memory in quarantine; the soak caps that
quarantine so RSS measures the daemon, not ASan."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack, wait_until  # noqa: E402

SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
SAMPLE = float(os.environ.get("SOAK_SAMPLE", "10"))
PER_ROUND = 3


def rss_kib(pid):
    """(VmRSS, RssAnon) in KiB.  RssAnon is what a leak grows: VmRSS also
    counts the pages of the LMDB map the daemon touched, which grow with
    the data, as they should."""
    got = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon"):
                got[k] = int(v.split()[0])
    return got["VmRSS"], got["RssAnon"]


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Soak:
    def __init__(self, stack):
        self.st = stack
        self.waiting = []       # (number, outcome) created, not yet acted on
        self.done = 0
        self.round = 0

    def step(self):
        """One round: new tickets, the people act on the previous ones, the
        simulated clocks move ten minutes."""
        st, imp = self.st, self.st.imperai
        self.round += 1
        for i in range(PER_ROUND):
            t = st.snow.create_ticket(category="password_reset",
                                      short_description="soak %d.%d" % (self.round, i))
            self.waiting.append(t["number"])
        by_number = {}
        for v in imp.verifications():
            by_number[v["ticket"]["number"]] = v
        keep = []
        for n, number in enumerate(self.waiting[:-PER_ROUND]):
            v = by_number.get(number)
            if v is None:
                keep.append(number)     # not registered yet: next round
                continue
            kind = (self.round + n) % 4
            if v["status"] != "pending" or kind == 3:
                continue        # kind 3 is left pending: it times out as the clock moves
            imp.act(v["id"], "send", recipient="user%d@example.org" % (self.round % 97),
                    agent="Ivy")
            if kind == 0:
                imp.act(v["id"], "complete", outcome="passed", risk_score=1)
                imp.act(v["id"], "action", status="completed", automated=True)
            elif kind == 1:
                imp.act(v["id"], "complete", outcome="failed", risk_score=9)
            else:
                imp.act(v["id"], "complete", outcome="not_enough_questions")
            self.done += 1
        self.waiting = keep + self.waiting[-PER_ROUND:]
        imp.control.ok("POST", "/sim/clock", {"advance": 600})
        st.snow.control.ok("POST", "/sim/clock", {"advance": 600})


def judge(samples):
    """(figures, problems) of the samples after warm-up: problems is []
    when memory and open files stayed flat."""
    body = samples[len(samples) // 5:]
    if len(body) < 4:
        return {}, ["too few samples (%d) to judge" % len(body)]
    q = max(1, len(body) // 4)
    first = sum(s[1] for s in body[:q]) / q
    last = sum(s[1] for s in body[-q:]) / q
    floor0 = min(s[2] for s in body[:q])
    floor1 = min(s[2] for s in body[-q:])
    peak = max(s[2] for s in body)
    fig = {"rss_anon_first_kib": round(first), "rss_anon_last_kib": round(last),
           "fds_floor_first": floor0, "fds_floor_last": floor1, "fds_peak": peak}
    bad = []
    if last > first * 1.10 + 1024:
        bad.append("anonymous RSS grew from %.0f KiB to %.0f KiB" % (first, last))
    if floor1 > floor0 + 2 or peak > floor0 + 16:
        bad.append("open files grew: lowest %d at first, %d at the end; all: %s" % (
            floor0, floor1, [s[2] for s in body]))
    return fig, bad


def flat(samples):
    """Problems with the samples after warm-up, as text ([] if flat)."""
    return judge(samples)[1]


def main(argv):
    figures = None
    if argv[:1] == ["--figures"] and len(argv) == 2:
        figures = argv[1]
    elif argv:
        print("usage: soak.py [--figures FILE]", file=sys.stderr)
        return 2
    fig = {"seconds": SECONDS, "ok": False, "verdict": "did not finish"}
    try:
        return run(fig)
    finally:
        if figures:
            with open(figures, "w") as f:
                json.dump(fig, f, indent=1, sort_keys=True)


def run(fig):
    stack = Stack()
    try:
        stack.daemon_env = {"ASAN_OPTIONS": "quarantine_size_mb=4:" +
                            os.environ.get("ASAN_OPTIONS", "")}
        stack.start()
        pid = stack.daemon.proc.pid
        soak = Soak(stack)
        samples = []
        start = time.monotonic()
        next_sample = start
        while True:
            now = time.monotonic()
            if now >= next_sample:
                rss, anon = rss_kib(pid)
                samples.append((now - start, anon, nfds(pid), rss))
                print("t=%5.0fs rss=%6d KiB anon=%6d KiB fds=%3d tickets=%d acted=%d" % (
                    samples[-1][0], rss, anon, samples[-1][2], soak.round * PER_ROUND,
                    soak.done), flush=True)
                next_sample += SAMPLE
            if now - start >= SECONDS:
                break
            soak.step()
            # Paced by the daemon: the round's tickets are in the store.
            last = soak.waiting[-1]
            wait_until(lambda: stack.imperai.verification_for(last), 60,
                       "the daemon to register %s" % last, detail=stack.logs)
            if not stack.daemon.running():
                raise AssertionError("the daemon died\n" + stack.logs())
        status = stack.ctl_json("status", "--json")
        print("status: effects_done=%s effects_failed=%s" % (
            status.get("effects_done", "?"), status.get("effects_failed", "?")))
        code = stack.stop_daemon()
        judged, problems = judge(samples)
        verdict = "NOT flat" if problems else "flat"
        fig.update(judged)
        fig.update(tickets=soak.round * PER_ROUND, acted=soak.done, samples=len(samples),
                   effects_done=status.get("effects_done"),
                   effects_failed=status.get("effects_failed"), exit_code=code)
        if code != 0:
            problems.append("the daemon exited %s\n%s" % (code, stack.daemon.log(40)))
            verdict += ", the daemon exited %s" % code
        for p in problems:
            print("FAIL: " + p)
        print("soak: %d s, %d tickets, %d acted on, %d samples: %s" % (
            SECONDS, soak.round * PER_ROUND, soak.done, len(samples),
            "flat" if not problems else "NOT flat"))
        fig.update(ok=not problems, verdict=verdict, problems=problems)
        return 1 if problems else 0
    finally:
        stack.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
