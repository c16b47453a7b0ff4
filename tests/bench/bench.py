#!/usr/bin/env python3
"""imperai-snow benchmark: throughput, latency, cost per ticket and scale,
against the limits the network sets (issue #8; README "Performance").

    make bench                                  # builds bench-build/ (-O2, no sanitizers), runs all
    python3 tests/bench/bench.py --builddir DIR [--quick] [--only a,b] [--json FILE]

Scenarios (each starts its own simulators and daemon in a temporary
directory, through tests/integration/harness.py):

  sims     the simulators' own ceiling: C client threads with keep-alive
           connections send the daemon's kinds of requests, at latency L
           and at 0 (how fast the Python simulators can answer at all),
           the PATCH also over TLS
  burst    N new tickets already waiting (default 5000), L on both
           simulators, over plain HTTP and then over TLS (both simulators
           on HTTPS, the daemon verifying through ca_file): time until
           every field is written, tickets/s and the ratio to the C/L
           limit; daemon CPU per ticket; TLS handshakes per ticket (full
           and resumed, counted by the simulators); duplicate work notes;
           TLS against plain; peak RSS
  steady   tickets created at R per second for T seconds, poll interval P:
           field written - ticket created, from the simulator's own
           timestamps (/sim/writes at_ms): p50, p95, p99, max
  life     requests per ticket over the whole life of a verified,
           automatically closed ticket (inject, link sent, outcome,
           action + resolve), against the minimum
  idle     CPU and requests of a poll cycle with nothing new, with 1,000
           and 1,000,000 tracked tickets in the store (filled by
           tests/bench/fill_store); store bytes per ticket; private RSS

Figures are printed as one table.  --quick runs every scenario small and
checks only that it completes (exit 0): no timing is asserted anywhere,
since the machines it runs on are shared.  Standard library only.
"""
import argparse
import http.client
import json
import os
import platform
import shutil
import ssl
import subprocess
import sys
from collections import Counter
import tempfile
import threading
import time
from base64 import b64encode

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRC = os.path.abspath(os.path.join(HERE, "..", ".."))

harness = None  # imported once the build directory is known

FIELD = "u_imperai_verification"
PATCH_KEY = "PATCH /api/now/table/incident/{sys_id}"
LIST_KEY = "GET /api/now/table/incident"
GET_KEY = "GET /api/now/table/incident/{sys_id}"
CREATE_KEY = "POST /v1/verification-requests"
FEED_KEY = "GET /v1/verification-requests/changes"

AUTO_FLOWS = """flows:
  - name: password-reset
    match:
      table: incident
      categories: [password_reset]
    action: password_reset
    automated: true
    close: true
    close_code: "Solution provided"
    close_notes: "Password reset by {requester} after imper.ai verification {verification_id}."
    max_age: 1h
    on_fail:
      work_note: "High risk detected - Reject this request"
"""


def load_harness(builddir):
    global harness
    os.environ["top_builddir"] = os.path.abspath(builddir)
    os.environ.setdefault("top_srcdir", TOP_SRC)
    sys.path.insert(0, os.path.join(TOP_SRC, "tests", "integration"))
    import harness as h  # noqa: E402
    harness = h


# ---------------------------------------------------------------- process figures

def cpu_seconds(pid, precise=False):
    """User + system CPU of process pid, in seconds.  By default from
    /proc/PID/stat, which also counts threads that have ended (the
    simulators start one per connection), in clock ticks; precise: the
    scheduler's nanosecond run time of the live threads (the daemon has
    one thread)."""
    if precise:
        total = 0
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    total += int(f.read().split()[0])
            return total / 1e9
        except OSError:
            pass
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def smaps_rollup(pid):
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        pass
    return out


def memory_rows(what, m):
    """The daemon's own memory (Private_Dirty: heap, stacks, written data)
    apart from the pages of files it maps (Private_Clean and Shared_Clean:
    LMDB's map, read-only here since writes go through write(2), and the
    libraries) -- those are the page cache, reclaimable, not the daemon's."""
    kb = lambda k: m.get(k, 0) / 1024.0  # noqa: E731
    return [("memory", "%s private RSS (Private_Dirty)" % what, "%.1f MiB" % kb("Private_Dirty"),
             "", None, "anonymous %.1f MiB" % kb("Anonymous")),
            ("memory", "%s mapped file pages resident" % what,
             "%.1f MiB" % (kb("Private_Clean") + kb("Shared_Clean")), "", None,
             "Private_Clean %.1f + Shared_Clean %.1f MiB (LMDB map, libraries); RSS %.1f MiB"
             % (kb("Private_Clean"), kb("Shared_Clean"), kb("Rss")))]


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


# ---------------------------------------------------------------- the stack

def make_stack(args, poll=1, flows=None, tls=False):
    st = harness.Stack(None, categories=("password_reset",), poll=poll, log_level="info",
                         snow_extra="  concurrency = %d;\n  page_size = %d;\n"
                         % (args.concurrency, args.page_size),
                         imperai_extra="  concurrency = %d;\n" % args.concurrency,
                         flows=flows, imperai_args=("--no-fsync", "--in-memory"), tls=tls)
    if os.environ.get("BENCH_STATE_DIR"):  # diagnostics: the store on another disk (tmpfs)
        st.state = tempfile.mkdtemp(dir=os.environ["BENCH_STATE_DIR"])
    return st


def set_latency(stack, ms):
    stack.snow.control.ok("POST", "/sim/faults", {"latency_ms": ms, "path_prefix": "/api/"})
    stack.imperai.control.ok("POST", "/sim/faults", {"latency_ms": ms, "path_prefix": "/v1/"})


def sim_stats(sim):
    return sim.control.ok("GET", "/sim/stats")


def count_control_calls(sim):
    """Counts the bench's own control requests in sim.calls: each is one
    connection (and over TLS one full handshake) the simulator counts too."""
    call = sim.control.call
    sim.calls = 0

    def counted(*a, **kw):
        sim.calls += 1
        return call(*a, **kw)
    sim.control.call = counted


def daemon_connections(sim, before, after):
    """(connections, full TLS handshakes, resumed ones) the daemon opened to
    sim between two snapshots (stats, sim.calls after taking them)."""
    (s0, n0), (s1, n1) = before, after
    ours = n1 - n0  # our requests after the first snapshot, the second included
    d = lambda k: s1.get(k, 0) - s0.get(k, 0)  # noqa: E731
    return d("connections") - ours, d("tls_full") - (ours if sim.tls else 0), d("tls_resumed")


def reset_stats(stack):
    stack.snow.control.ok("POST", "/sim/stats/reset")
    stack.imperai.control.ok("POST", "/sim/stats/reset")


def create_tickets(stack, n, category="password_reset"):
    return stack.snow.control.ok("POST", "/sim/tickets", {
        "table": "incident", "count": n, "caller": "abel.tuter",
        "fields": {"category": category, "subcategory": "forgotten_password",
                   "short_description": "Please reset my password"}})["tickets"]


def field_writes(stack, wanted):
    """sys_id -> at_ms of the first write of the field, for sys_ids in wanted;
    and sys_id -> at_ms of the ticket's creation."""
    first, created = {}, {}
    for w in stack.snow.control.ok("GET", "/sim/writes?table=incident"):
        sid = w["sys_id"]
        if sid not in wanted:
            continue
        if w["method"] == "POST":
            created.setdefault(sid, w["at_ms"])
        elif FIELD in w["fields"] and sid not in first:
            first[sid] = w["at_ms"]
    return first, created


def wait_fields(stack, sys_ids, timeout, on_detect=None):
    """Waits until every ticket in sys_ids has its field written.  Polls the
    cheap PATCH counter first; on_detect() runs the moment it looks done
    (to sample the daemon before the bench's own reads add noise)."""
    wanted = set(sys_ids)
    deadline = time.monotonic() + timeout
    sample = None
    while True:
        n = sim_stats(stack.snow)["requests"].get(PATCH_KEY, 0)
        if n >= len(wanted):
            if on_detect:
                sample = on_detect()
            first, created = field_writes(stack, wanted)
            if len(first) == len(wanted):
                return first, created, sample
        if time.monotonic() > deadline:
            raise AssertionError("waited %d s for %d fields; PATCHes so far %d\n%s"
                                 % (timeout, len(wanted), n, stack.logs()))
        time.sleep(0.1)


KEEP = False


def stop_stack(stack):
    """Stops what the stack started; removes its directory unless --keep."""
    for part in (stack.daemon, stack.snow, stack.imperai):
        if part is not None:
            try:
                part.stop()
            except Exception:  # noqa: BLE001 - stopping must not hide the figures
                pass
    if KEEP:
        sys.stderr.write("bench: kept %s\n" % stack.dir)
    else:
        shutil.rmtree(stack.dir, ignore_errors=True)
        if not stack.state.startswith(stack.dir):
            shutil.rmtree(stack.state, ignore_errors=True)


# ---------------------------------------------------------------- sims: their own ceiling

def _client_run(base, reqs, nthreads, total, fresh=False, ca_file=None):
    """nthreads keep-alive clients share total requests; reqs(i) gives
    (method, path, body, headers) of request i; fresh: a new connection
    for each request; an https base is verified against ca_file.
    Returns (seconds, errors)."""
    host, port = base.split("//")[1].split(":")
    lock = threading.Lock()
    state = {"next": 0, "errors": 0}
    if base.startswith("https:"):
        ctx = ssl.create_default_context(cafile=ca_file)
        new_conn = lambda: http.client.HTTPSConnection(  # noqa: E731
            host, int(port), timeout=30, context=ctx)
    else:
        new_conn = lambda: http.client.HTTPConnection(host, int(port), timeout=30)  # noqa: E731

    def worker():
        conn = new_conn()
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= total:
                break
            method, path, body, headers = reqs(i)
            if fresh:
                conn.close()
                conn = new_conn()
            try:
                conn.request(method, path, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                if r.status >= 300:
                    with lock:
                        state["errors"] += 1
            except (OSError, http.client.HTTPException):
                with lock:
                    state["errors"] += 1
                conn.close()
                conn = new_conn()
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(nthreads)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - t0, state["errors"]


def scenario_sims(args, out):
    for tls in (False, True):
        sims_one(args, out, tls)


def sims_one(args, out, tls):
    stack = make_stack(args, tls=tls)
    try:
        stack.start_sims()
        tickets = create_tickets(stack, 200)
        auth = "Basic " + b64encode(("%s:%s" % (harness.SNOW_USER,
                                                harness.SNOW_PASSWORD)).encode()).decode()
        # the fields the daemon reads back from a PATCH (its poll fields)
        fields = ("sys_id,number,sys_mod_count,sys_updated_on,state,active,category,"
                  "subcategory,short_description,description,assigned_to.name,%s,caller_id,"
                  "caller_id.name,caller_id.email,caller_id.user_name" % FIELD)

        def snow_patch(i):
            t = tickets[i % len(tickets)]
            body = json.dumps({FIELD: "<p>bench %d</p>" % i, "work_notes": "bench %d" % i})
            return ("PATCH", "/api/now/table/incident/%s?sysparm_fields=%s"
                    "&sysparm_exclude_reference_link=true" % (t["sys_id"], fields), body,
                    {"Authorization": auth, "Content-Type": "application/json",
                     "Accept": "application/json"})

        def imp_create(i):
            body = json.dumps({
                "ticket": {"instance": "bench", "table": "incident", "sys_id": "%032x" % i,
                           "number": "INC%07d" % (90000 + i)},
                "subject": "bench", "description": "bench", "category": "password_reset",
                "requested_action": "password_reset",
                "requester": {"name": "Abel Tuter", "email": "abel.tuter@example.com",
                              "user_name": "abel.tuter"},
                "assigned_agent": ""})
            return ("POST", "/v1/verification-requests", body,
                    {"Authorization": "Bearer " + harness.IMPERAI_KEY,
                     "Content-Type": "application/json", "Idempotency-Key": "bench-%d" % i})

        c, lat = args.concurrency, args.latency
        n_lat = max(4 * c, int(args.sims_seconds * c * 1000 / max(lat, 1)))
        n_raw = max(20, int(args.sims_seconds * 400))
        runs = [("servicenow PATCH over TLS, kept alive", stack.snow, snow_patch)] if tls else [
            ("servicenow PATCH, kept alive", stack.snow, snow_patch),
            ("imper.ai create", stack.imperai, imp_create)]
        for name, sim, reqs in runs:
            set_latency(stack, lat)
            secs, errs = _client_run(sim.url, reqs, c, n_lat, False, stack.ca_file)
            limit = c * 1000.0 / lat if lat else float("inf")
            out.append(("sims", "%s, C=%d, L=%d ms" % (name, c, lat), "%.0f req/s" % (n_lat / secs),
                        "C/L = %.0f req/s" % limit, n_lat / secs / limit,
                        "%d errors" % errs if errs else ""))
            set_latency(stack, 0)
            secs, errs = _client_run(sim.url, reqs, c, n_raw, False, stack.ca_file)
            out.append(("sims", "%s, C=%d, L=0 (sim CPU ceiling)" % (name, c),
                        "%.0f req/s" % (n_raw / secs), "", None,
                        "%d errors" % errs if errs else ""))
    finally:
        stop_stack(stack)


# ---------------------------------------------------------------- burst

def duplicate_notes(stack, sys_ids):
    """(work notes written more than once, tickets without one)."""
    dump = stack.snow.control.ok("GET", "/sim/dump")
    notes = Counter(j["element_id"] for j in dump["journal"]
                    if j["element"] == "work_notes" and j["element_id"] in sys_ids)
    return sum(c - 1 for c in notes.values()), len(sys_ids) - len(notes)


def burst_one(args, tls):
    """One burst; returns its figures."""
    n = args.tickets
    stack = make_stack(args, tls=tls)
    try:
        stack.start_sims()
        sims = (stack.snow, stack.imperai)
        for sim in sims:
            count_control_calls(sim)
        set_latency(stack, args.latency)
        made = create_tickets(stack, n)
        stack.write_config()
        before = [(sim_stats(sim), sim.calls) for sim in sims]
        t0 = time.time() * 1000.0
        stack.start_daemon()
        pid = stack.daemon.proc.pid

        sims0 = [cpu_seconds(sim.proc.pid) for sim in sims]

        def sample():
            f = {"cpu": cpu_seconds(pid, True), "hwm_kb": proc_status_kb(pid, "VmHWM"),
                 "mem": smaps_rollup(pid)}
            f["stats"] = [(sim_stats(sim), sim.calls) for sim in sims]
            f["sims"] = tuple(cpu_seconds(sim.proc.pid) - c0 for sim, c0 in zip(sims, sims0))
            return f

        sids = [t["sys_id"] for t in made]
        first, _, f = wait_fields(stack, sids, args.timeout, sample)
        f["secs"] = (max(first.values()) - t0) / 1000.0
        f["conns"] = [daemon_connections(sim, b, a) for sim, b, a in zip(sims, before, f["stats"])]
        f["requests"] = [a[0]["total"] - b[0]["total"] for b, a in zip(before, f["stats"])]
        f["dups"], f["missing"] = duplicate_notes(stack, set(sids))
        return f
    finally:
        stop_stack(stack)


def burst_rows(args, f, what, out):
    """The rows of one burst; returns (tickets/s, limit)."""
    n, c, lat = args.tickets, args.concurrency, args.latency / 1000.0
    snow_req, imp_req = f["requests"]
    # The limit: each service carries its requests at C/L at best.
    need = max(snow_req, n + -(-n // args.page_size)) / (c / lat)
    need = max(need, max(imp_req, n) / (c / lat))
    limit_tps = n / need if need else float("inf")
    tps = n / f["secs"]
    (sc, sf, sr), (ic, if_, ir) = f["conns"]
    out.append(("burst", "%s: %d tickets, C=%d, L=%d ms: all fields in"
                % (what, n, c, args.latency), "%.2f s" % f["secs"], "%.2f s" % need, None, ""))
    out.append(("burst", "%s: throughput" % what, "%.1f tickets/s" % tps,
                "limit %.1f tickets/s" % limit_tps, tps / limit_tps,
                "goal >= 0.7" + (" met" if tps / limit_tps >= 0.7 else " NOT met")))
    out.append(("burst", "%s: requests: ServiceNow / imper.ai" % what,
                "%d / %d" % (snow_req, imp_req),
                "min %d / %d" % (n + -(-n // args.page_size), n), None, ""))
    out.append(("burst", "%s: daemon CPU per ticket (user+sys)" % what,
                "%.0f us" % (f["cpu"] / n * 1e6), "", None, "%.2f s in all" % f["cpu"]))
    note = "ServiceNow %d, imper.ai %d" % (sc, ic)
    if sf or sr or if_ or ir:
        note += "; TLS handshakes full + resumed: ServiceNow %d + %d, imper.ai %d + %d" % (
            sf, sr, if_, ir)
    per = (sc + ic) / float(n)
    out.append(("burst", "%s: connections opened per ticket" % what, "%.3f" % per,
                "goal <= 0.05", None, note + ("" if per <= 0.05 else "; NOT met")))
    out.append(("burst", "%s: duplicate work notes / tickets without one" % what,
                "%d / %d" % (f["dups"], f["missing"]), "0 / 0", None,
                "met" if f["dups"] == 0 and f["missing"] == 0 else "NOT met"))
    out.append(("burst", "%s: simulators' CPU: ServiceNow / imper.ai" % what,
                "%.1f / %.1f s" % f["sims"], "%.1f s of wall time" % f["secs"], None,
                "one core each at most (Python GIL)"))
    return tps, limit_tps


def scenario_burst(args, out, figures):
    plain = burst_one(args, False)
    tls = burst_one(args, True)
    tps, _ = burst_rows(args, plain, "HTTP", out)
    tls_tps, tls_limit = burst_rows(args, tls, "TLS", out)
    figures["burst_tps"], figures["burst_tls_tps"] = tps, tls_tps
    full = sum(c[1] for c in tls["conns"])
    resumed = sum(c[2] for c in tls["conns"])
    n = args.tickets
    out.append(("burst", "TLS handshakes per ticket: full / resumed",
                "%.3f / %.3f" % (full / n, resumed / n), "", None,
                "%d full, %d resumed, both services" % (full, resumed)))
    goal = lambda v, ok, text: "%s %s" % (text, "met" if ok else "NOT met")  # noqa: E731
    r = tls_tps / tps
    out.append(("burst", "TLS / HTTP: throughput", "x %.2f" % r, "", None,
                goal(r, r >= 0.85, "goal >= 0.85")))
    r = tls_tps / tls_limit
    out.append(("burst", "TLS / C/L limit: throughput", "x %.2f" % r, "", None,
                goal(r, r >= 0.8, "goal >= 0.8")))
    r = (tls["cpu"] / n) / (plain["cpu"] / n)
    out.append(("burst", "TLS / HTTP: daemon CPU per ticket", "x %.2f" % r, "", None,
                goal(r, r <= 1.3, "goal <= 1.3")))
    for what, f in (("HTTP", plain), ("TLS", tls)):
        out.append(("memory", "burst %s: peak RSS (VmHWM)" % what,
                    "%.1f MiB" % (f["hwm_kb"] / 1024.0), "", None,
                    "includes the LMDB pages it touched"))
    out.extend(memory_rows("burst TLS, at the end:", tls["mem"]))


# ---------------------------------------------------------------- steady load

def scenario_steady(args, out):
    stack = make_stack(args, poll=args.poll)
    rate, secs = args.rate, args.steady_seconds
    try:
        stack.start()
        set_latency(stack, args.latency)
        made = []
        start = time.monotonic()
        total = int(rate * secs)
        for i in range(total):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            made += create_tickets(stack, 1)
        first, created, _ = wait_fields(stack, [t["sys_id"] for t in made], args.timeout)
        lat = sorted(first[s] - created[s] for s in first)
        goal = args.poll * 1000 + 3 * args.latency + 50
        p99 = percentile(lat, 99)
        out.append(("steady", "%d tickets at %g/s, poll %d s, L=%d ms" % (total, rate, args.poll,
                                                                         args.latency),
                    "", "", None, ""))
        for p in (50, 95, 99):
            v = percentile(lat, p)
            out.append(("steady", "time to field p%d" % p, "%.0f ms" % v,
                        "goal p99 <= %d ms" % goal if p == 99 else "", None,
                        ("met" if v <= goal else "NOT met") if p == 99 else ""))
        out.append(("steady", "time to field max", "%.0f ms" % lat[-1], "", None, ""))
        out.append(("steady", "floor: 3 round trips", "%d ms" % (3 * args.latency),
                    "+ wait for the poll (0..%d ms)" % (args.poll * 1000), None, ""))
        return p99
    finally:
        stop_stack(stack)


# ---------------------------------------------------------------- sweep and commit lag

def sweep_status(stack):
    r = stack.ctl("status", "--json")
    return (json.loads(r.stdout).get("tables") or {}).get("incident") or {} if r.stdout else {}


def sweep_stack(args, interval):
    st = make_stack(args, poll=1)
    st.snow_extra += "  sweep_interval = %d;\n" % interval
    return st


def scenario_sweep_cost(args, out):
    """A table of N active tickets in the flows' category, each already
    handled (resolved, still active: never verified): one sweep's cost."""
    stack = sweep_stack(args, args.sweep_interval)
    try:
        stack.start()
        stack.snow.control.ok("POST", "/sim/tickets", {
            "table": "incident", "count": args.sweep_tickets, "caller": "abel.tuter",
            "fields": {"category": "password_reset", "state": "6",
                       "close_code": "Solution provided", "close_notes": "done"}})
        deadline = time.monotonic() + args.timeout
        while True:
            st = sweep_status(stack)
            if (st.get("sweep_runs") or 0) >= 2:
                break
            if time.monotonic() > deadline:
                raise AssertionError("no second sweep in time\n" + stack.logs())
            time.sleep(0.5)
        out.append(("sweep", "one sweep of %d active tickets (page_size %d)"
                    % (args.sweep_tickets, args.page_size), "", "", None, ""))
        out.append(("sweep", "requests per run", "%d" % st["sweep_last_requests"],
                    "ceil(N / page_size) + 1", None, ""))
        out.append(("sweep", "seconds per run", "%.2f s" % (st["sweep_last_ms"] / 1000.0),
                    "", None, ""))
    finally:
        stop_stack(stack)


def scenario_sweep_lag(args, out):
    """A ticket committed 3 x poll_overlap late while the watermark moves
    on: the poll never reads it; time from its creation to its field."""
    stack = sweep_stack(args, args.sweep_interval)
    overlap = 2  # the harness's poll_overlap
    try:
        stack.start()
        control = create_tickets(stack, 1)[0]
        wait_fields(stack, [control["sys_id"]], args.timeout)
        stack.snow.control.ok("POST", "/sim/settings", {"commit_lag": 3 * overlap})
        late = create_tickets(stack, 1)[0]
        stop, n = time.monotonic() + 3 * overlap + 2, 0
        while time.monotonic() < stop:  # the watermark moves past it meanwhile
            n += 1
            stack.snow.patch("incident", control["sys_id"], short_description="edit %d" % n)
            time.sleep(0.3)
        first, created, _ = wait_fields(stack, [late["sys_id"]], args.timeout)
        ttf = first[late["sys_id"]] - created[late["sys_id"]]
        out.append(("sweep", "time to field, visible %d s (3 x overlap) late" % (3 * overlap),
                    "%.1f s" % (ttf / 1000.0), "<= lag + sweep_interval (%d s) + a poll"
                    % args.sweep_interval, None,
                    "met" if ttf <= (3 * overlap + args.sweep_interval + 2) * 1000 else "NOT met"))
    finally:
        stop_stack(stack)


# ---------------------------------------------------------------- life of a ticket

def wait_state(stack, state, n, timeout):
    def done():
        s = stack.ctl_json("status", "--json")
        return (s["tickets"]["by_state"].get(state, 0) >= n and
                s["outbox"]["pending"] == 0)
    stack.wait(done, timeout, "%d tickets in %s with an empty outbox" % (n, state))


def scenario_life(args, out):
    n = args.life_tickets
    stack = make_stack(args, flows=AUTO_FLOWS)
    try:
        stack.start()
        set_latency(stack, args.latency)
        reset_stats(stack)
        made = create_tickets(stack, n)
        numbers = {t["number"] for t in made}
        wait_state(stack, "link_ready", n, args.timeout)
        ids = [v["id"] for v in stack.imperai.verifications()
               if v["ticket"]["number"] in numbers]
        steps = [("send", {"recipient": "abel@example.org", "agent": "Ivy"}, "link_sent"),
                 ("complete", {"outcome": "passed", "risk_score": 1}, "passed"),
                 ("action", {"status": "completed", "automated": True}, "closed")]
        for do, kw, state in steps:
            for vid in ids:
                stack.imperai.act(vid, do, **kw)
            wait_state(stack, state, n, args.timeout)
        snow = sim_stats(stack.snow)["requests"]
        imp = sim_stats(stack.imperai)["requests"]
        patches = snow.get(PATCH_KEY, 0)
        gets = snow.get(GET_KEY, 0)
        lists = snow.get(LIST_KEY, 0)
        creates = imp.get(CREATE_KEY, 0)
        feeds = imp.get(FEED_KEY, 0)
        other_imp = sum(imp.values()) - creates - feeds
        out.append(("life", "%d tickets: inject, link sent, outcome, action + close" % n,
                    "", "", None, ""))
        out.append(("life", "ServiceNow PATCH per ticket", "%.2f" % (patches / n), "min 4",
                    4 / (patches / n) if patches else None, ""))
        out.append(("life", "ServiceNow GET record per ticket", "%.2f" % (gets / n), "min 1",
                    None, "read-backs: a resolve is read back before it is sent"))
        out.append(("life", "ServiceNow list pages (whole run)", "%d" % lists, "", None,
                    "%.2f per ticket" % (lists / n)))
        out.append(("life", "imper.ai create per ticket", "%.2f" % (creates / n), "min 1",
                    1 / (creates / n) if creates else None, ""))
        out.append(("life", "imper.ai feed pages (whole run)", "%d" % feeds, "", None,
                    "%.2f per ticket; other calls %d" % (feeds / n, other_imp)))
    finally:
        stop_stack(stack)


def scenario_backlog(args, out):
    """The same life while ServiceNow is slow (1 s per PATCH): the link-sent,
    outcome and action updates of a ticket queue behind each other and
    go out merged."""
    n = args.life_tickets
    stack = make_stack(args, flows=AUTO_FLOWS)
    try:
        stack.start()
        set_latency(stack, args.latency)
        made = create_tickets(stack, n)
        numbers = {t["number"] for t in made}
        wait_state(stack, "link_ready", n, args.timeout)
        ids = [v["id"] for v in stack.imperai.verifications()
               if v["ticket"]["number"] in numbers]
        stack.snow.control.ok("POST", "/sim/faults", {"latency_ms": 1000, "methods": ["PATCH"],
                                                      "path_prefix": "/api/"})
        steps = [("send", {"recipient": "abel@example.org", "agent": "Ivy"}, "link_sent"),
                 ("complete", {"outcome": "passed", "risk_score": 1}, "passed"),
                 ("action", {"status": "completed", "automated": True}, "closed")]
        for do, kw, state in steps:
            for vid in ids:
                stack.imperai.act(vid, do, **kw)
            stack.wait(lambda: stack.ctl_json("status", "--json")["tickets"]["by_state"]
                       .get(state, 0) >= n, args.timeout, "%d tickets decided %s" % (n, state))
        set_latency(stack, args.latency)
        wait_state(stack, "closed", n, args.timeout)
        sids = {t["sys_id"] for t in made}
        writes = [w for w in stack.snow.control.ok("GET", "/sim/writes?table=incident")
                  if w["method"] == "PATCH" and w["sys_id"] in sids]
        out.append(("life", "same, ServiceNow at 1 s per PATCH: PATCH per ticket",
                     "%.2f" % (len(writes) / n), "4 unmerged, min 2", None,
                     "updates queued together go out as one"))
    finally:
        stop_stack(stack)


# ---------------------------------------------------------------- idle cost and growth

def run_fill(builddir, state, n):
    tool = os.path.join(builddir, "tests", "bench", "fill_store")
    r = subprocess.run([tool, state, str(n)], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("fill_store %s %d: %s" % (state, n, r.stderr))
    return int(r.stdout.split()[3])


def idle_one(args, n):
    stack = make_stack(args, poll=1)
    try:
        stack.start_sims()
        set_latency(stack, args.latency)
        os.makedirs(stack.state, exist_ok=True)
        t0 = time.monotonic()
        used = run_fill(args.builddir, stack.state, n)
        fill_s = time.monotonic() - t0
        disk = os.stat(os.path.join(stack.state, "data.mdb")).st_blocks * 512
        stack.write_config()
        stack.start_daemon()
        pid = stack.daemon.proc.pid
        # warm-up: the first cycles read the overlap and write the status
        time.sleep(args.idle_warmup)
        reset_stats(stack)
        # CPU per cycle in several windows, the median: one window can
        # catch a neighbour's burst on a shared machine
        per_window, cycles = [], 0
        for _ in range(args.idle_windows):
            before = sim_stats(stack.snow)["requests"].get(LIST_KEY, 0)
            c0 = cpu_seconds(pid, True)
            time.sleep(args.idle_seconds / args.idle_windows)
            c1 = cpu_seconds(pid, True)
            got = sim_stats(stack.snow)["requests"].get(LIST_KEY, 0) - before
            cycles += got
            per_window.append((c1 - c0) / max(got, 1))
        snow = sim_stats(stack.snow)
        imp = sim_stats(stack.imperai)
        mem = smaps_rollup(pid)
        per_window.sort()
        return {"n": n, "cycles": cycles, "cpu_cycle": per_window[len(per_window) // 2],
                "windows": per_window, "snow": snow["total"], "imp": imp["total"],
                "used": used, "disk": disk, "mem": mem, "fill_s": fill_s}
    finally:
        stop_stack(stack)


def scenario_idle(args, out):
    res = [idle_one(args, n) for n in args.idle_sizes]
    per = []
    for r in res:
        cyc = max(r["cycles"], 1)
        cpu_cycle = r["cpu_cycle"] * 1e6
        per.append(cpu_cycle)
        out.append(("idle", "%d tracked: CPU per poll cycle" % r["n"], "%.0f us" % cpu_cycle,
                    "", None, "median of %d windows (%s us); %d cycles in %g s"
                    % (len(r["windows"]), " ".join("%.0f" % (w * 1e6) for w in r["windows"]),
                       r["cycles"], args.idle_seconds)))
        out.append(("idle", "%d tracked: requests per cycle (SN / imper.ai)" % r["n"],
                    "%.2f / %.2f" % (r["snow"] / cyc, r["imp"] / cyc), "min 1 / 1", None, ""))
        out.append(("idle", "%d tracked: store bytes per ticket" % r["n"],
                    "%.0f B" % (r["used"] / r["n"]), "", None,
                    "data.mdb %.1f MiB on disk; filled in %.1f s"
                    % (r["disk"] / 1048576.0, r["fill_s"])))
        out.extend(memory_rows("%d tracked, idle:" % r["n"], r["mem"]))
    if len(per) >= 2 and per[0] > 0:
        ratio = per[-1] / per[0]
        out.append(("idle", "CPU per cycle, %d vs %d tracked" % (res[-1]["n"], res[0]["n"]),
                    "x %.2f" % ratio, "goal within 20%", None,
                    "met" if abs(ratio - 1) <= 0.2 else "NOT met"))


# ---------------------------------------------------------------- output

def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d CPUs (nproc), %s, Python %s" % (cpu or platform.processor(), os.cpu_count(),
                                                   platform.platform(), platform.python_version())


def print_table(rows):
    head = ("scenario", "figure", "value", "limit / goal", "ratio", "note")
    cells = [head] + [(a, b, c, d, "" if e is None else "%.2f" % e, f)
                      for a, b, c, d, e, f in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    for i, r in enumerate(cells):
        print("  ".join(v.ljust(widths[k]) for k, v in enumerate(r)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


SCENARIOS = ("sims", "burst", "steady", "life", "idle", "sweep")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--builddir", default=os.environ.get("top_builddir") or
                   os.path.join(TOP_SRC, "_build", "bench"))
    p.add_argument("--quick", action="store_true",
                   help="every scenario small; checks only that each completes")
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    p.add_argument("--latency", type=int, default=20, help="L, ms, on both simulators")
    p.add_argument("--concurrency", type=int, default=4, help="C per service (the default)")
    p.add_argument("--page-size", type=int, default=100)
    p.add_argument("--tickets", type=int, default=5000, help="burst size")
    p.add_argument("--rate", type=float, default=10.0, help="steady: tickets per second")
    p.add_argument("--steady-seconds", type=float, default=60.0)
    p.add_argument("--poll", type=int, default=2, help="steady: poll interval, s")
    p.add_argument("--life-tickets", type=int, default=100)
    p.add_argument("--idle-sizes", default="1000,1000000")
    p.add_argument("--idle-seconds", type=float, default=30.0)
    p.add_argument("--idle-windows", type=int, default=6, help="idle: windows, median taken")
    p.add_argument("--idle-warmup", type=float, default=3.0)
    p.add_argument("--sims-seconds", type=float, default=2.0)
    p.add_argument("--sweep-tickets", type=int, default=10000, help="sweep: table size")
    p.add_argument("--sweep-interval", type=int, default=10, help="sweep: seconds")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--json", help="also write the rows as JSON to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    a = p.parse_args(argv)
    if a.quick:
        a.tickets, a.steady_seconds, a.life_tickets = 100, 2.0, 3
        a.idle_sizes, a.idle_seconds, a.idle_warmup, a.idle_windows = "100,2000", 2.0, 1.0, 2
        a.sims_seconds, a.rate, a.timeout = 0.2, 10.0, 120.0
        a.sweep_tickets, a.sweep_interval = 200, 3
    a.idle_sizes = [int(x) for x in a.idle_sizes.split(",")]
    a.only = [s for s in a.only.split(",") if s]
    for s in a.only:
        if s not in SCENARIOS:
            p.error("unknown scenario %r (known: %s)" % (s, ", ".join(SCENARIOS)))
    return a


def main(argv):
    global KEEP
    args = parse_args(argv)
    KEEP = args.keep
    load_harness(args.builddir)
    for binary in (harness.DAEMON, harness.CTL):
        if not os.access(binary, os.X_OK):
            sys.stderr.write("bench: %s not built (make, or make bench)\n" % binary)
            return 2
    rows, figures = [], {}
    t0 = time.monotonic()
    for name in args.only:
        if name == "sims":
            scenario_sims(args, rows)
        elif name == "burst":
            scenario_burst(args, rows, figures)
        elif name == "steady":
            scenario_steady(args, rows)
        elif name == "life":
            scenario_life(args, rows)
            scenario_backlog(args, rows)
        elif name == "idle":
            scenario_idle(args, rows)
        elif name == "sweep":
            scenario_sweep_cost(args, rows)
            scenario_sweep_lag(args, rows)
    print("imperai-snow benchmark%s: %s" % (" (--quick: figures not meaningful)"
                                            if args.quick else "", machine()))
    print("binaries: %s; %.0f s in all" % (args.builddir, time.monotonic() - t0))
    print()
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
