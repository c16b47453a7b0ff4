#!/usr/bin/env python3
"""make reliability: every long run of issue #7, then one table of their
figures at the very end.  Exit 0 when every part held.

- crash: the full crash campaign (tests/crash/campaign.py --full);
- faults: the full fault campaign (tests/crash/faults.py --full);
- hostile: every hostile-input case (tests/integration/test_hostile.py);
- fuzz: each libFuzzer target for FUZZ_SECONDS (default 60) through
  tests/fuzz/run.sh, after `make fuzz-build`; "skipped: no clang" when
  FUZZ_CC (default clang) is missing or cannot link libFuzzer;
- soak: SOAK_SECONDS (default 600) of tickets flowing while memory and
  open files are sampled (tests/integration/soak.py).

    python3 tests/crash/reliability.py [--parts crash,faults,...|--all] [--seed N] ...

Without --parts or --all only the two campaigns run (make
reliability-campaigns).  Other options go to both campaigns.  The
environment gives top_srcdir and top_builddir (set by make),
RELIABILITY_MAKE (default make), FUZZ_CC, FUZZ_DIR (relative to top_builddir), FUZZ_TARGETS,
FUZZ_SECONDS and SOAK_SECONDS.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(os.path.dirname(HERE))
PARTS = ("crash", "faults", "hostile", "fuzz", "soak")


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def call(cmd, **kw):
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, **kw)


def run_script(path, args, figures):
    """Runs a Python test script that writes --figures; its figures with
    its exit code added as "exit"."""
    code = call([sys.executable, path] + args + ["--figures", figures])
    fig = load(figures)
    fig["exit"] = code
    return fig


# -- fuzzing ------------------------------------------------------------------


def fuzz_log_figures(text):
    """(executions, crashes) from one libFuzzer run's output.  Executions:
    the final stats (stat::number_of_executed_units), else "Done N runs",
    else the last "#N" status line.  Crashes: the inputs libFuzzer wrote
    out (a crash, leak, timeout or broken invariant stops the run)."""
    runs = None
    for rx in (r"^stat::number_of_executed_units:\s*(\d+)", r"^Done (\d+) runs",
               r"^#(\d+)\s"):
        found = re.findall(rx, text, re.M)
        if found:
            runs = int(found[-1])
            break
    crashes = len(re.findall(r"^Test unit written to ", text, re.M))
    return runs, crashes


def libfuzzer_missing(cc, workdir):
    """Why fuzzing cannot run here, or None when cc links libFuzzer."""
    if not shutil.which(cc):
        return "skipped: no " + os.path.basename(cc)
    src = os.path.join(workdir, "probe.c")
    with open(src, "w") as f:
        f.write("#include <stddef.h>\n#include <stdint.h>\n"
                "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)"
                " { (void)d; (void)n; return 0; }\n")
    if subprocess.call([cc, "-fsanitize=fuzzer,address,undefined", "-o",
                        os.path.join(workdir, "probe"), src],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) != 0:
        return "skipped: %s cannot link libFuzzer" % os.path.basename(cc)
    return None


def run_fuzz(workdir):
    builddir = os.environ.get("top_builddir", os.getcwd())
    srcdir = os.environ.get("top_srcdir", SRCDIR)
    cc = os.environ.get("FUZZ_CC") or "clang"
    seconds = int(os.environ.get("FUZZ_SECONDS") or 60)
    bindir = os.path.join(builddir, os.environ.get("FUZZ_DIR") or "tests/fuzz/clang")
    targets = (os.environ.get("FUZZ_TARGETS") or "").split() or sorted(
        os.path.basename(p)[5:-2] for p in glob.glob(os.path.join(srcdir, "tests/fuzz/fuzz_*.c")))
    fig = {"seconds": seconds, "targets": {}}
    why = libfuzzer_missing(cc, workdir)
    if why:
        print("fuzz: " + why, flush=True)
        fig.update(skipped=why, ok=True)
        return fig
    # The sub-make runs alone: the jobserver's descriptors stay here.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}
    make = (os.environ.get("RELIABILITY_MAKE") or "make").split()
    if call(make + ["-C", builddir, "fuzz-build", "FUZZ_CC=" + cc,
                    "FUZZ_DIR=" + os.path.relpath(bindir, builddir)], env=env) != 0:
        fig.update(ok=False, build_failed=True)
        return fig
    ok = True
    for t in targets:
        code = call(["sh", os.path.join(srcdir, "tests/fuzz/run.sh"), bindir,
                     os.path.join(srcdir, "tests/fuzz"), str(seconds), t], env=env)
        try:
            with open(os.path.join(bindir, "fuzz_%s.log" % t), errors="replace") as f:
                runs, crashes = fuzz_log_figures(f.read())
        except OSError:
            runs, crashes = None, 0
        if code != 0:
            crashes = max(crashes, 1)
            ok = False
        fig["targets"][t] = {"runs": runs, "crashes": crashes, "exit": code}
    fig["ok"] = ok
    return fig


# -- the table ----------------------------------------------------------------


def part_ok(name, fig):
    """Whether a part held (None: it did not run)."""
    if fig is None:
        return None
    if fig.get("exit", 0) != 0 or not fig.get("ok"):
        return False
    if name == "hostile":
        return fig.get("daemon_down") == 0 and fig.get("decoy_requests") == 0 \
            and fig.get("cases", 0) > 0
    if name == "fuzz" and not fig.get("skipped"):
        return bool(fig.get("targets")) and all(
            t.get("exit") == 0 and t.get("crashes") == 0 and t.get("runs")
            for t in fig["targets"].values())
    return True


def q(v):
    return "?" if v is None else v


def total(*values):
    """The sum of the figures, None when one is missing."""
    if any(v is None for v in values):
        return None
    return sum(values)


def campaign_rows(crash, faults):
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
        ("requests ServiceNow / imper.ai", "-", "%s / %s" % (q(faults.get("requests_snow")),
                                                            q(faults.get("requests_imperai")))),
        ("  fault-free run, same work", "-", "%s / %s in %s s" % (
            q(faults.get("baseline_snow")), q(faults.get("baseline_imperai")),
            q(faults.get("baseline_seconds")))),
        ("request ratio vs fault-free (max 1.5)", "-", faults.get("ratio")),
        ("  work requests only / raw", "-", "%s / %s" % (q(faults.get("work_ratio")),
                                                         q(faults.get("raw_ratio")))),
        ("ServiceNow request budget (per hour)", "-", faults.get("budget")),
        ("instance rate-limit 429s met", "-", faults.get("instance_429")),
        ("4xx answers retried", "-", faults.get("retried_4xx")),
        ("audit verify", "ok" if crash.get("audit_ok") else "FAILED",
         "ok" if faults.get("audit_ok") else "FAILED"),
        ("duplicates / losses", "%s / %s" % (q(crash.get("duplicates")), q(crash.get("losses"))),
         "%s / %s" % (q(faults.get("duplicates")), q(faults.get("losses")))),
        ("exit status", q(crash.get("exit")), q(faults.get("exit"))),
    ]
    return rows


def hostile_rows(h):
    if not h:
        return [("hostile input", "did not run")]
    passed = h.get("cases", 0) - h.get("failures", 0) - h.get("errors", 0) - h.get("skipped", 0)
    return [
        ("hostile cases run / passed", "%s / %s" % (q(h.get("cases")), passed)),
        ("scripted answers taken: ServiceNow / imper.ai",
         "%s / %s" % (q(h.get("answers_snow")), q(h.get("answers_imperai")))),
        ("daemon found running after a case", "%s of %s" % (
            q(h.get("daemon_up")), total(h.get("daemon_up"), h.get("daemon_down")))),
        ("checks: nothing written / kept working", "%s / %s" % (
            q(h.get("nothing_written_checks")), q(h.get("still_working_checks")))),
        ("requests to the decoy host", q(h.get("decoy_requests"))),
        ("hostile input", "ok" if part_ok("hostile", h) else "FAILED"),
    ]


def fuzz_rows(f):
    if not f:
        return [("fuzzing", "did not run")]
    if f.get("skipped"):
        return [("fuzzing (libFuzzer)", f["skipped"])]
    if f.get("build_failed"):
        return [("fuzzing (libFuzzer)", "FAILED: make fuzz-build")]
    rows = []
    for t, v in sorted(f.get("targets", {}).items()):
        rows.append(("fuzz_%s: inputs tried, crashes" % t, "%s, %s" % (q(v.get("runs")),
                                                                       q(v.get("crashes")))))
    ts = list(f.get("targets", {}).values())
    rows.append(("fuzzing, %s s per target: inputs, crashes" % f.get("seconds"), "%s, %s" % (
        q(total(*[t.get("runs") for t in ts])), q(total(*[t.get("crashes") for t in ts])))))
    return rows


def soak_rows(s):
    if not s:
        return [("soak", "did not run")]
    return [
        ("soak: seconds, tickets, samples", "%s, %s, %s" % (q(s.get("seconds")),
                                                           q(s.get("tickets")),
                                                           q(s.get("samples")))),
        ("RssAnon KiB: first / last quarter", "%s / %s" % (q(s.get("rss_anon_first_kib")),
                                                           q(s.get("rss_anon_last_kib")))),
        ("open files floor: first / last quarter", "%s / %s (peak %s)" % (
            q(s.get("fds_floor_first")), q(s.get("fds_floor_last")), q(s.get("fds_peak")))),
        ("soak verdict", s.get("verdict", "?")),
    ]


def final_figures(figs):
    """DUPLICATES, LOSSES and BUDGET OVERRUNS over the campaigns that ran
    (None: a figure is missing; "-": no campaign ran)."""
    ran = [figs[p] for p in ("crash", "faults") if figs.get(p) is not None]
    if not ran:
        return "-", "-", "-"
    overruns = figs["faults"].get("budget_overruns") if figs.get("faults") is not None else "-"
    return (total(*[f.get("duplicates") for f in ran]),
            total(*[f.get("losses") for f in ran]), overruns)


def verdict(figs):
    """(ok, text) over every part that ran."""
    failed = [p for p in PARTS if part_ok(p, figs.get(p)) is False]
    for name, v in zip(("duplicates", "losses", "budget overruns"), final_figures(figs)):
        if v is None:
            failed.append(name + " unknown")
        elif v not in (0, "-"):
            failed.append(name)
    ran = [p for p in PARTS if figs.get(p) is not None]
    if not ran:
        failed.append("nothing ran")
    if failed:
        return False, "FAILED: " + ", ".join(failed)
    fz = figs.get("fuzz")
    note = " (fuzzing %s)" % fz["skipped"] if fz and fz.get("skipped") else ""
    return True, "PASS: " + ", ".join(ran) + " held" + note


def table(figs):
    """The one table of figures: figs maps each part in PARTS to its
    figures (None: not run) and "seed" to the campaigns' seed."""
    crash, faults = figs.get("crash") or {}, figs.get("faults") or {}
    sections = []
    if figs.get("crash") is not None or figs.get("faults") is not None:
        rows = campaign_rows(crash, faults)
        # A campaign that did not run (--parts) has "-" in its column.
        sections.append([(r[0], r[1] if figs.get("crash") is not None else "-",
                          r[2] if figs.get("faults") is not None else "-") for r in rows])
    if "hostile" in figs:
        sections.append(hostile_rows(figs["hostile"]))
    if "fuzz" in figs:
        sections.append(fuzz_rows(figs["fuzz"]))
    if "soak" in figs:
        sections.append(soak_rows(figs["soak"]))
    ok, text = verdict(figs)
    dup, loss, over = final_figures(figs)
    sections.append([("DUPLICATES", q(dup)), ("LOSSES", q(loss)), ("BUDGET OVERRUNS", q(over)),
                     ("VERDICT", "PASS" if ok else "FAILED")])
    w = max(len(r[0]) for s in sections for r in s)
    seed = figs.get("seed", crash.get("seed", faults.get("seed")))
    title = "imperai-snow reliability" + ("" if seed is None else " (seed %s)" % seed)
    head = "%-*s  %14s  %14s" % (w, title, "crash", "faults") if crash or faults \
        else "%-*s  %30s" % (w, title, "")
    out = ["", head, "-" * len(head)]
    for n, section in enumerate(sections):
        if n:
            out.append("")
        for row in section:
            if len(row) == 3:
                out.append("%-*s  %14s  %14s" % (w, row[0], q(row[1]), q(row[2])))
            else:
                out.append("%-*s  %30s" % (w, row[0], q(row[1])))
    out += ["-" * len(head), text]
    return "\n".join(out)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", help="comma-separated, of " + ",".join(PARTS))
    p.add_argument("--all", action="store_true", help="every part")
    args, rest = p.parse_known_args(argv)
    parts = PARTS if args.all else tuple((args.parts or "crash,faults").split(","))
    unknown = set(parts) - set(PARTS)
    if unknown:
        p.error("unknown parts: " + ", ".join(sorted(unknown)))
    srcdir = os.environ.get("top_srcdir", SRCDIR)
    figs = {}
    with tempfile.TemporaryDirectory(prefix="imperai-snow-reliability.") as d:
        for part in PARTS:
            if part not in parts:
                continue
            print("\n== %s" % part, flush=True)
            figures = os.path.join(d, part + ".json")
            if part == "crash":
                figs[part] = run_script(os.path.join(HERE, "campaign.py"), ["--full"] + rest,
                                        figures)
            elif part == "faults":
                figs[part] = run_script(os.path.join(HERE, "faults.py"), ["--full"] + rest,
                                        figures)
            elif part == "hostile":
                figs[part] = run_script(os.path.join(srcdir, "tests/integration/test_hostile.py"),
                                        [], figures)
            elif part == "fuzz":
                figs[part] = run_fuzz(d)
            elif part == "soak":
                figs[part] = run_script(os.path.join(srcdir, "tests/integration/soak.py"), [],
                                        figures)
    figs.setdefault("crash", None)
    figs.setdefault("faults", None)
    seed = (figs["crash"] or figs["faults"] or {}).get("seed")
    if seed is not None:
        figs["seed"] = seed
    print(table(figs))
    ok, _ = verdict(figs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
