#!/usr/bin/env python3
"""make reliability's table (tests/crash/reliability.py) from sample
figures: every part's rows, the final rows and the verdict, a fuzzing part
skipped for want of clang, and the figures read from libFuzzer's output.
No daemon; well under a second."""
import copy
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reliability  # noqa: E402

CRASH = {"ok": True, "exit": 0, "seed": 7, "tickets": 150, "seconds": 300.0, "kills": 212,
         "writes": 900, "notes": 600, "audit_ok": True, "duplicates": 0, "losses": 0}
FAULTS = {"ok": True, "exit": 0, "seed": 7, "tickets": 150, "seconds": 280.0, "writes": 880,
          "notes": 590, "faults": {"reset": 31, "503": 40}, "requests_snow": 1200,
          "requests_imperai": 700, "baseline_snow": 1000, "baseline_imperai": 650,
          "baseline_seconds": 250.0, "ratio": 1.2, "work_ratio": 1.1, "raw_ratio": 1.2,
          "budget": 3600, "instance_429": 3, "retried_4xx": 0, "audit_ok": True,
          "duplicates": 0, "losses": 0, "budget_overruns": 0}
HOSTILE = {"ok": True, "exit": 0, "cases": 34, "failures": 0, "errors": 0, "skipped": 0,
           "answers_snow": 41, "answers_imperai": 17, "daemon_up": 34, "daemon_down": 0,
           "nothing_written_checks": 25, "still_working_checks": 3, "decoy_requests": 0}
FUZZ = {"ok": True, "seconds": 60, "targets": {
    "flows": {"runs": 59892, "crashes": 0, "exit": 0},
    "render": {"runs": 120000, "crashes": 0, "exit": 0}}}
SOAK = {"ok": True, "exit": 0, "seconds": 600, "tickets": 540, "samples": 61,
        "rss_anon_first_kib": 9000, "rss_anon_last_kib": 9100, "fds_floor_first": 11,
        "fds_floor_last": 11, "fds_peak": 14, "verdict": "flat"}
ALL = {"seed": 7, "crash": CRASH, "faults": FAULTS, "hostile": HOSTILE, "fuzz": FUZZ,
       "soak": SOAK}

LOG = """INFO: Seed: 1
#2\tINITED cov: 400 ft: 900 corp: 200/100Kb exec/s: 0 rss: 60Mb
#59892\tDONE   cov: 526 ft: 2086 corp: 330/267Kb lim: 12008 exec/s: 9982 rss: 227Mb
Done 59892 runs in 6 second(s)
stat::number_of_executed_units: 59892
stat::new_units_added:          1011
"""
CRASH_LOG = """#2\tINITED cov: 400 ft: 900 corp: 200/100Kb exec/s: 0 rss: 60Mb
#4096\tpulse  cov: 410 ft: 950 corp: 210/101Kb exec/s: 2048 rss: 61Mb
==1234==ERROR: AddressSanitizer: heap-buffer-overflow
Test unit written to /src/tests/fuzz/crashes/render-crash-0123
"""


def rows(text):
    """{name: value text} of the table's lines."""
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition("  ")
        if sep:
            out[name.strip()] = value.strip()
    return out


class TableTest(unittest.TestCase):
    def test_every_part_held(self):
        text = reliability.table(ALL)
        r = rows(text)
        self.assertIn("kills survived (SIGKILL + restart)", r)
        self.assertTrue(r["kills survived (SIGKILL + restart)"].startswith("212"))
        self.assertEqual(r["faults injected: reset"].split(), ["-", "31"])
        self.assertEqual(r["hostile cases run / passed"], "34 / 34")
        self.assertEqual(r["scripted answers taken: ServiceNow / imper.ai"], "41 / 17")
        self.assertEqual(r["fuzz_flows: inputs tried, crashes"], "59892, 0")
        self.assertEqual(r["fuzzing, 60 s per target: inputs, crashes"], "179892, 0")
        self.assertEqual(r["RssAnon KiB: first / last quarter"], "9000 / 9100")
        self.assertEqual(r["open files floor: first / last quarter"], "11 / 11 (peak 14)")
        self.assertEqual(r["soak verdict"], "flat")
        self.assertEqual((r["DUPLICATES"], r["LOSSES"], r["BUDGET OVERRUNS"]), ("0", "0", "0"))
        self.assertEqual(r["VERDICT"], "PASS")
        self.assertEqual(text.splitlines()[-1], "PASS: crash, faults, hostile, fuzz, soak held")
        self.assertEqual(reliability.verdict(ALL)[0], True)

    def test_final_rows_come_last(self):
        lines = [line for line in reliability.table(ALL).splitlines() if line.strip()]
        self.assertEqual([line.split("  ")[0] for line in lines[-6:-2]],
                         ["DUPLICATES", "LOSSES", "BUDGET OVERRUNS", "VERDICT"])

    def test_fuzzing_skipped_without_clang_is_no_failure(self):
        figs = dict(ALL, fuzz={"ok": True, "seconds": 60, "targets": {},
                               "skipped": "skipped: no clang"})
        r = rows(reliability.table(figs))
        self.assertEqual(r["fuzzing (libFuzzer)"], "skipped: no clang")
        ok, text = reliability.verdict(figs)
        self.assertTrue(ok)
        self.assertIn("fuzzing skipped: no clang", text)

    def test_a_duplicate_fails(self):
        figs = copy.deepcopy(ALL)
        figs["crash"]["duplicates"] = 1
        r = rows(reliability.table(figs))
        self.assertEqual(r["DUPLICATES"], "1")
        self.assertEqual(r["VERDICT"], "FAILED")
        self.assertEqual(reliability.verdict(figs), (False, "FAILED: duplicates"))

    def test_each_part_can_fail(self):
        bad = {"crash": {"exit": 1}, "faults": {"ok": False}, "hostile": {"daemon_down": 1},
               "fuzz": {"ok": False}, "soak": {"verdict": "NOT flat", "ok": False}}
        for part, change in bad.items():
            figs = copy.deepcopy(ALL)
            figs[part].update(change)
            ok, text = reliability.verdict(figs)
            self.assertFalse(ok, part)
            self.assertIn(part, text)

    def test_a_campaign_without_figures(self):
        # Killed before it wrote any: its exit status shows, and no "None".
        figs = dict(ALL, faults={"exit": -9})
        text = reliability.table(figs)
        self.assertNotIn("None", text)
        r = rows(text)
        self.assertEqual(r["exit status"].split(), ["0", "-9"])
        self.assertEqual(r["requests ServiceNow / imper.ai"].split(), ["-", "?", "/", "?"])
        self.assertEqual(r["LOSSES"], "?")
        self.assertEqual(reliability.verdict(figs), (
            False, "FAILED: faults, duplicates unknown, losses unknown, budget overruns unknown"))

    def test_a_missing_figure_fails(self):
        figs = copy.deepcopy(ALL)
        del figs["faults"]["losses"]
        self.assertEqual(rows(reliability.table(figs))["LOSSES"], "?")
        self.assertFalse(reliability.verdict(figs)[0])

    def test_a_fuzz_target_that_crashed(self):
        figs = copy.deepcopy(ALL)
        figs["fuzz"]["targets"]["render"] = {"runs": 4096, "crashes": 1, "exit": 1}
        self.assertEqual(rows(reliability.table(figs))["fuzz_render: inputs tried, crashes"],
                         "4096, 1")
        self.assertEqual(reliability.verdict(figs), (False, "FAILED: fuzz"))

    def test_campaigns_only(self):
        figs = {"seed": 7, "crash": CRASH, "faults": FAULTS}
        r = rows(reliability.table(figs))
        self.assertNotIn("soak verdict", r)
        self.assertNotIn("hostile cases run / passed", r)
        self.assertEqual(r["VERDICT"], "PASS")

    def test_one_campaign_only(self):
        r = rows(reliability.table({"faults": FAULTS}))
        self.assertEqual(r["audit verify"].split(), ["-", "ok"])
        self.assertEqual(r["VERDICT"], "PASS")

    def test_libfuzzer_output(self):
        self.assertEqual(reliability.fuzz_log_figures(LOG), (59892, 0))
        self.assertEqual(reliability.fuzz_log_figures(CRASH_LOG), (4096, 1))
        self.assertEqual(reliability.fuzz_log_figures(
            "Done 77 runs in 60 second(s)\n"), (77, 0))
        self.assertEqual(reliability.fuzz_log_figures(""), (None, 0))


if __name__ == "__main__":
    unittest.main(verbosity=2)
