#!/usr/bin/env python3
"""The end-to-end browser test: both simulators and imperai-snowd (1 s
polls, the shipped automated password-reset flow) via harness.Stack, one
password_reset ticket, then `node e2e.mjs` walks the agent's and the
requester's path in headless Chromium and leaves a screenshot per step.

    python3 tests/browser/test_browser.py          # as `make check` runs it
    python3 tests/browser/test_browser.py --demo   # walk a running tests/demo.sh

Exit 0 passed, 1 failed, 77 skipped.  It skips only outside CI (CI unset or
empty) when node or the browser is missing; in CI that is a failure.

playwright-core (pinned in package-lock.json) is installed with `npm ci`
when missing, into a writable directory next to a copy of package.json and
package-lock.json: the build directory's tests/browser when make runs the
test from a separate build directory (so a read-only source tree, as in
`make distcheck`, works), else tests/browser itself.  e2e.mjs is told where
it is through PLAYWRIGHT_CORE.  Screenshots go to artifacts/ in that same
directory.  CHROMIUM names the browser (default /usr/bin/chromium); no
browser is ever downloaded.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402

SKIP, FAIL = 77, 1
IN_CI = bool(os.environ.get("CI"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE_RUN_TIMEOUT = 600   # e2e.mjs's own waits are 60 s each; this only stops a hung run
PACKAGE_FILES = ("package.json", "package-lock.json")


def say(msg):
    print("test_browser: " + msg, flush=True)


def missing(what):
    """A tool the test cannot run without: skip on a developer's machine,
    fail in CI (where tests/deps.sh installs it)."""
    if IN_CI:
        say("FAIL: %s; CI must have it (tests/deps.sh test installs it)" % what)
        sys.exit(FAIL)
    say("SKIP: %s (tests/deps.sh test installs it)" % what)
    sys.exit(SKIP)


def work_dir():
    """Where node_modules and artifacts/ go (see the module's doc)."""
    build = os.environ.get("top_builddir")
    if build and os.path.realpath(build) != os.path.realpath(harness.TOP_SRC):
        return os.path.join(os.path.abspath(build), "tests", "browser")
    return HERE


def pinned_version():
    with open(os.path.join(HERE, "package-lock.json")) as f:
        return json.load(f)["packages"]["node_modules/playwright-core"]["version"]


def installed_version(d):
    try:
        with open(os.path.join(d, "node_modules", "playwright-core", "package.json")) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_playwright(work):
    """The playwright-core directory, installed with npm ci if needed."""
    want = pinned_version()
    for d in (HERE, work):
        if installed_version(d) == want:
            return os.path.join(d, "node_modules", "playwright-core")
    npm = shutil.which("npm")
    if npm is None:
        missing("npm is not installed, so playwright-core %s cannot be" % want)
    os.makedirs(work, exist_ok=True)
    if work != HERE:
        for name in PACKAGE_FILES:
            shutil.copyfile(os.path.join(HERE, name), os.path.join(work, name))
    say("installing playwright-core %s: npm ci in %s" % (want, work))
    t = time.monotonic()
    r = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"], cwd=work,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0 or installed_version(work) != want:
        say("FAIL: npm ci in %s exited %d (is the npm registry reachable?)\n%s%s"
            % (work, r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
        sys.exit(FAIL)
    say("installed in %.1f s" % (time.monotonic() - t))
    return os.path.join(work, "node_modules", "playwright-core")


def run_e2e(node, playwright, args):
    """Runs e2e.mjs in its own process group, so that a hung run is stopped
    with its browser.  Returns its exit status."""
    env = dict(os.environ, PLAYWRIGHT_CORE=playwright, CHROMIUM=CHROMIUM)
    proc = subprocess.Popen([node, os.path.join(HERE, "e2e.mjs")] + args, env=env,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        return proc.wait(timeout=NODE_RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        say("FAIL: e2e.mjs still running after %d s: stopping it" % NODE_RUN_TIMEOUT)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return FAIL
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def main(argv):
    demo = argv[1:] == ["--demo"]
    if argv[1:] and not demo:
        print("usage: %s [--demo]" % argv[0], file=sys.stderr)
        return 64
    node = shutil.which("node")
    if node is None:
        missing("node is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        missing("no browser at %s (set CHROMIUM to another)" % CHROMIUM)
    work = work_dir()
    playwright = ensure_playwright(work)
    artifacts = os.path.join(work, "artifacts")

    if demo:
        # The demo's URLs, as tests/demo.sh prints them.
        artifacts = os.path.join(artifacts, "demo")
        args = ["--snow", "http://127.0.0.1:%s" % os.environ.get("SNOW_PORT", "18080"),
                "--imperai", "http://127.0.0.1:%s" % os.environ.get("IMPERAI_PORT", "18090"),
                "--artifacts", artifacts]
        code = run_e2e(node, playwright, args)
        say("%s; screenshots in %s" % ("passed" if code == 0 else "FAILED", artifacts))
        return 0 if code == 0 else FAIL

    if not os.access(harness.DAEMON, os.X_OK):
        say("FAIL: no daemon at %s (build first, or set top_builddir)" % harness.DAEMON)
        return FAIL
    t = time.monotonic()
    stack = harness.Stack(flows=harness.FLOWS_AUTOMATED, poll=1)
    try:
        stack.start()
        ticket = stack.snow.create_ticket(
            category="password_reset", subcategory="forgotten_password",
            short_description="Cannot log in: forgot my password",
            description="Locked out after the holidays; please reset my password.")
        say("stack up in %.1f s: ServiceNow %s, imper.ai %s, ticket %s"
            % (time.monotonic() - t, stack.snow.url, stack.imperai.url, ticket["number"]))
        code = run_e2e(node, playwright, [
            "--snow", stack.snow.url, "--imperai", stack.imperai.url,
            "--artifacts", artifacts, "--ticket", ticket["number"]])
        if code == 0:
            # The daemon's own record agrees with what the pages showed.
            rows = stack.ctl_json("list", "--json", "--ticket", ticket["number"])
            if not rows or rows[0]["status"] != "passed":
                say("FAIL: imperai-snowctl list shows %r, expected status passed" % (rows,))
                code = FAIL
        if code != 0:
            say("FAILED; screenshots in %s\n%s" % (artifacts, stack.logs()))
            return FAIL
        say("passed in %.1f s; screenshots in %s" % (time.monotonic() - t, artifacts))
        return 0
    finally:
        stack.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
