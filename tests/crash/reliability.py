#!/usr/bin/env python3
"""make reliability: the full crash campaign and the full fault campaign
(tests/crash/campaign.py --full, tests/crash/faults.py --full), then one
table of their figures.  Exit 0 when both held every invariant.

    python3 tests/crash/reliability.py [--seed N] [campaign options...]
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(script, args, figures):
    cmd = [sys.executable, os.path.join(HERE, script), "--full", "--figures", figures] + args
    print("$ " + " ".join(cmd[1:]), flush=True)
    code = subprocess.call(cmd)
    try:
        with open(figures) as f:
            return code, json.load(f)
    except (OSError, ValueError):
        return code, {}


def table(crash, faults):
    rows = [
        ("tickets walked", crash.get("tickets"), faults.get("tickets")),
        ("seconds", crash.get("seconds"), faults.get("seconds")),
        ("kills survived (SIGKILL + restart)", crash.get("kills"), "-"),
        ("daemon writes to ServiceNow", crash.get("writes"), faults.get("writes")),
        ("work notes checked", crash.get("notes"), faults.get("notes")),
    ]
    for kind, n in sorted(faults.get("faults", {}).items()):
        rows.append(("faults injected: " + kind, "-", n))
    rows += [
        ("requests ServiceNow / imper.ai", "-", "%s / %s" % (faults.get("requests_snow"),
                                                            faults.get("requests_imperai"))),
        ("  fault-free run, same work", "-", "%s / %s in %s s" % (
            faults.get("baseline_snow"), faults.get("baseline_imperai"),
            faults.get("baseline_seconds"))),
        ("request ratio vs fault-free (max 1.5)", "-", faults.get("ratio")),
        ("  work requests only / raw", "-", "%s / %s" % (faults.get("work_ratio"),
                                                         faults.get("raw_ratio"))),
        ("ServiceNow request budget (per hour)", "-", faults.get("budget")),
        ("instance rate-limit 429s met", "-", faults.get("instance_429")),
        ("4xx answers retried", "-", faults.get("retried_4xx")),
        ("audit verify", "ok" if crash.get("audit_ok") else "FAILED",
         "ok" if faults.get("audit_ok") else "FAILED"),
        ("DUPLICATES", crash.get("duplicates"), faults.get("duplicates")),
        ("LOSSES", crash.get("losses"), faults.get("losses")),
        ("BUDGET OVERRUNS", "-", faults.get("budget_overruns")),
    ]
    w = max(len(r[0]) for r in rows)
    out = ["", "%-*s  %14s  %14s" % (w, "imperai-snow reliability (seed %s)" % crash.get(
        "seed", faults.get("seed")), "crash", "faults")]
    out.append("-" * len(out[1]))
    for name, a, b in rows:
        out.append("%-*s  %14s  %14s" % (w, name, "?" if a is None else a,
                                          "?" if b is None else b))
    return "\n".join(out)


def main(argv):
    with tempfile.TemporaryDirectory(prefix="imperai-snow-reliability.") as d:
        c_code, crash = run("campaign.py", argv, os.path.join(d, "crash.json"))
        f_code, faults = run("faults.py", argv, os.path.join(d, "faults.json"))
    print(table(crash, faults))
    ok = c_code == 0 and f_code == 0 and crash.get("ok") and faults.get("ok")
    print("\n%s" % ("all invariants held" if ok else "FAILED: see the campaigns' output above"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
