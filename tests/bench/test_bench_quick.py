#!/usr/bin/env python3
"""make check: every benchmark scenario, small (bench.py --quick), against
the build under test.  It checks that each scenario completes and prints
its rows; it asserts no figure (these machines are shared and noisy)."""
import io
import os
import sys
import unittest
from contextlib import redirect_stdout

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402


class QuickBenchTest(unittest.TestCase):
    def test_every_scenario_completes_and_prints_its_rows(self):
        builddir = os.environ.get("top_builddir") or os.path.join(bench.TOP_SRC, "_build")
        out = io.StringIO()
        with redirect_stdout(out):
            rc = bench.main(["--quick", "--builddir", builddir])
        text = out.getvalue()
        self.assertEqual(rc, 0, text)
        for scenario in bench.SCENARIOS + ("memory",):
            self.assertRegex(text, r"(?m)^%s " % scenario, text)
        sys.stdout.write(text)


if __name__ == "__main__":
    unittest.main()
