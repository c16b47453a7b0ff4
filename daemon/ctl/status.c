/* ctl-status: `imperai-snowctl status`: is the daemon running, are its
 * polls and writes keeping up.  The exit code makes it a monitoring
 * check: 0 ok, 1 error, 2 not running, 3 needs attention. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "config.h"
#include "ctl.h"
#include "codec.h"
#include "engine.h"
#include "store.h"
#include "util.h"

#define STATUS_STALE		30	/* seconds without a status write: not running */
#define STATUS_OUTBOX_OLD	600	/* seconds: a write this old needs attention */

struct status {
	json_object	*daemon;	/* meta daemon/status, NULL if never written */
	int		 running;
	char		*why_down;
	uint64_t	 by_state[TS__COUNT];
	uint64_t	 tickets;
	uint64_t	 unreadable;
	uint64_t	 outbox;
	uint64_t	 parked;
	int64_t		 oldest;	/* time of the oldest pending write, 0 if none */
	char		**attention;
	size_t		 nattention;
};

static void
status_attention(struct status *s, const char *fmt, ...) PRINTFLIKE(2, 3);
static void
status_attention(struct status *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	s->attention = xreallocarray(s->attention, s->nattention + 1, sizeof(*s->attention));
	s->attention[s->nattention++] = xvprintf(fmt, ap);
	va_end(ap);
}

static int64_t
status_int(json_object *o, const char *key)
{
	json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v))
		return 0;
	return json_object_get_int64(v);
}

static const char *
status_str(json_object *o, const char *key)
{
	json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

struct status_scan {
	struct status	*s;
	struct store_txn *txn;
};

static int
status_ticket_one(const char *table, const char *sys_id, const void *val, size_t len, void *arg)
{
	struct status_scan *sc = arg;
	struct ticket t;
	char *cause = NULL;

	memset(&t, 0, sizeof(t));	/* decode initialises it */
	if (codec_ticket_decode(val, len, &t, &cause) == 0 && (size_t)t.state < TS__COUNT) {
		sc->s->by_state[t.state]++;
		sc->s->tickets++;
	} else
		sc->s->unreadable++;
	free(cause);
	ticket_free(&t);
	return 0;
}

/* When an entry does not carry its creation time, the time its ticket
 * entered its state is the best estimate. */
static int64_t
status_effect_time(struct store_txn *txn, const struct effect *e)
{
	struct ticket t;
	struct buf b;
	int64_t at = 0;
	char *cause = NULL;

	if (e->created_at > 0)
		return e->created_at;
	buf_init(&b);
	memset(&t, 0, sizeof(t));
	if (store_ticket_get(txn, e->table, e->sys_id, &b) == 0 &&
	    codec_ticket_decode(b.data, b.len, &t, &cause) == 0)
		at = t.state_since;
	free(cause);
	ticket_free(&t);
	buf_free(&b);
	return at;
}

static int
status_outbox_one(uint64_t seq, const void *val, size_t len, void *arg)
{
	struct status_scan *sc = arg;
	struct outbox_entry en;
	char *cause = NULL;
	int64_t at;

	(void)seq;
	sc->s->outbox++;
	if (codec_entry_decode(val, len, &en, &cause) != 0) {
		sc->s->unreadable++;
		free(cause);
		return 0;
	}
	if (en.phase == OUTBOX_PARKED)
		sc->s->parked++;
	at = status_effect_time(sc->txn, &en.e);
	if (at > 0 && (sc->s->oldest == 0 || at < sc->s->oldest))
		sc->s->oldest = at;
	outbox_entry_free(&en);
	return 0;
}

static int
status_read(struct ctl *c, struct status *s)
{
	struct status_scan sc = { s, NULL };
	struct buf b;
	int rc;

	buf_init(&b);
	if ((rc = store_begin(c->st, 1, &sc.txn)) != 0)
		goto out;
	rc = store_meta_get(sc.txn, "daemon/status", &b);
	if (rc == 0)
		s->daemon = json_tokener_parse(b.data);
	if (rc == 0 || rc == -ENOENT)
		rc = store_ticket_each(sc.txn, status_ticket_one, &sc);
	if (rc == 0)
		rc = store_outbox_each(sc.txn, status_outbox_one, &sc);
	store_abort(sc.txn);
out:
	buf_free(&b);
	if (rc != 0)
		fprintf(stderr, "imperai-snowctl: cannot read the store: %s\n", store_strerror(rc));
	return rc;
}

/* Running: a status written in the last 30 s by a process that exists. */
static void
status_running(struct ctl *c, struct status *s)
{
	int64_t pid = status_int(s->daemon, "pid"), updated = status_int(s->daemon, "updated");

	if (s->daemon == NULL)
		s->why_down = xstrdup("it has never recorded a status in this state directory");
	else if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno != EPERM))
		s->why_down = xprintf("process %" PRId64 " is gone", pid);
	else if (c->now - updated > STATUS_STALE)
		s->why_down = xprintf("process %" PRId64 " has not recorded its status for %" PRId64
		    " s (hung?)", pid, c->now - updated);
	else
		s->running = 1;
}

/* Ages are taken at the daemon's last status write, not now: the status is
 * up to 5 s old by design, and polls are recorded only in it. */
static void
status_check_poll(struct ctl *c, struct status *s, const char *what, int64_t last_ok,
    int interval, const char *err)
{
	int64_t started = status_int(s->daemon, "started"), at = status_int(s->daemon, "updated");
	char age[24];

	if (last_ok > 0 && at - last_ok > 3 * (int64_t)interval) {
		ctl_format_age(c->now, last_ok, age);
		status_attention(s, "%s: last successful poll %s ago (interval %d s)", what, age,
		    interval);
	} else if (last_ok == 0 && at - started > 3 * (int64_t)interval)
		status_attention(s, "%s: no successful poll since the daemon started", what);
	if (err && *err) {
		char *safe = ctl_printable(err);
		status_attention(s, "%s: last error: %s", what, safe);
		free(safe);
	}
}

static void
status_checks(struct ctl *c, struct status *s)
{
	int snow_iv = c->cfg ? c->cfg->snow.poll_interval : 10;
	int imp_iv = c->cfg ? c->cfg->imperai.poll_interval : 5;
	json_object *tables = NULL;
	char age[24];

	if (!s->running)
		return;
	if (json_object_object_get_ex(s->daemon, "tables", &tables)) {
		json_object_object_foreach(tables, name, t) {
			char *what = xprintf("ServiceNow %s", name);
			status_check_poll(c, s, what, status_int(t, "last_ok"), snow_iv,
			    status_str(t, "last_error"));
			free(what);
		}
	}
	status_check_poll(c, s, "imper.ai change feed", status_int(s->daemon, "feed_last_ok"),
	    imp_iv, status_str(s->daemon, "feed_last_error"));
	if (s->parked > 0)
		status_attention(s, "%" PRIu64 " parked write%s: fix the cause (see "
		    "imperai-snowctl show); they are tried again every servicenow.parked_retry, "
		    "or at once with imperai-snowctl retry", s->parked, s->parked == 1 ? "" : "s");
	if (s->oldest > 0 && c->now - s->oldest > STATUS_OUTBOX_OLD) {
		ctl_format_age(c->now, s->oldest, age);
		status_attention(s, "the oldest pending write is %s old", age);
	}
}

static void
status_free(struct status *s)
{
	json_object_put(s->daemon);
	free(s->why_down);
	for (size_t i = 0; i < s->nattention; i++)
		free(s->attention[i]);
	free(s->attention);
}

/* --- text ------------------------------------------------------------------ */

static void
status_text_daemon(struct ctl *c, const struct status *s)
{
	char when[20], age[24], up[24];
	int64_t started = status_int(s->daemon, "started"), updated = status_int(s->daemon, "updated");

	if (!s->running) {
		printf("imperai-snowd: not running: %s\n", s->why_down);
		if (s->daemon == NULL)
			return;
		ctl_format_second(updated, when);
		printf("  last status:  %s UTC (pid %" PRId64 ")\n", when,
		    status_int(s->daemon, "pid"));
		return;
	}
	ctl_format_second(started, when);
	ctl_format_age(c->now, started, up);
	ctl_format_age(c->now, updated, age);
	printf("imperai-snowd: running, pid %" PRId64 ", since %s UTC (up %s); status %s old\n",
	    status_int(s->daemon, "pid"), when, up, age);
}

/* The sweep's findings and the lag they measured (sweep.c). */
static void
status_text_sweep(json_object *t)
{
	int64_t late = status_int(t, "late_records");

	if (!json_object_object_get_ex(t, "sweep_runs", NULL))
		return;
	printf("  %-14s sweep: %" PRId64 " runs, %" PRId64 " missed tickets found, last run %"
	    PRId64 " requests in %" PRId64 " ms\n", "", status_int(t, "sweep_runs"),
	    status_int(t, "sweep_missed"), status_int(t, "sweep_last_requests"),
	    status_int(t, "sweep_last_ms"));
	if (late > 0)
		printf("  %-14s %" PRId64 " record%s visible later than poll_overlap allows, largest "
		    "lag %" PRId64 " s: raise servicenow.poll_overlap above it\n", "", late,
		    late == 1 ? "" : "s", status_int(t, "late_max_lag"));
}

static void
status_text_poll(struct ctl *c, const char *name, json_object *t, const char *okkey,
    const char *errkey)
{
	int64_t last_ok = status_int(t, okkey);
	const char *wm = status_str(t, "watermark"), *err = status_str(t, errkey);
	char age[24], *safe = ctl_printable(err);

	ctl_format_age(c->now, last_ok, age);
	if (last_ok)
		printf("  %-14s last good poll %s ago", name, age);
	else
		printf("  %-14s no good poll yet", name);
	/* The daemon writes watermark 0 as the epoch: nothing seen yet. */
	if (wm && strcmp(wm, "1970-01-01 00:00:00") != 0)
		printf(", watermark %s", wm);
	printf("\n");
	if (err && *err)
		printf("  %-14s last error: %s\n", "", safe);
	free(safe);
	status_text_sweep(t);
}

static void
status_text_budget(const char *prefix, json_object *d, int budget)
{
	char *total = xprintf("%s_requests", prefix), *used = xprintf("%s_budget_used", prefix);
	char *limited = xprintf("%s_rate_limited", prefix), *waits = xprintf("%s_budget_waits", prefix);

	printf("  %-14s %" PRId64 " since start", "requests", status_int(d, total));
	if (budget)
		printf(", %" PRId64 " of %d this hour", status_int(d, used), budget);
	printf("; rate limited %" PRId64 ", waited for the budget %" PRId64 "\n",
	    status_int(d, limited), status_int(d, waits));
	free(total);
	free(used);
	free(limited);
	free(waits);
}

static void
status_text(struct ctl *c, const struct status *s)
{
	json_object *tables = NULL;
	char age[24];

	status_text_daemon(c, s);
	printf("ServiceNow:\n");
	if (s->daemon && json_object_object_get_ex(s->daemon, "tables", &tables)) {
		json_object_object_foreach(tables, name, t)
			status_text_poll(c, name, t, "last_ok", "last_error");
	}
	status_text_budget("snow", s->daemon, c->cfg ? c->cfg->snow.http.request_budget : 0);
	printf("imper.ai:\n");
	status_text_poll(c, "change feed", s->daemon, "feed_last_ok", "feed_last_error");
	status_text_budget("imperai", s->daemon, c->cfg ? c->cfg->imperai.http.request_budget : 0);
	printf("Tickets:         %" PRIu64 " tracked", s->tickets);
	for (size_t i = 0; i < TS__COUNT; i++)
		if (s->by_state[i])
			printf(", %s %" PRIu64, engine_state_name((enum tstate)i), s->by_state[i]);
	printf("\n");
	ctl_format_age(c->now, s->oldest, age);
	printf("Pending writes:  %" PRIu64 ", oldest %s, parked %" PRIu64 "; done %" PRId64
	    ", failed attempts %" PRId64 "\n", s->outbox, age, s->parked,
	    status_int(s->daemon, "effects_done"), status_int(s->daemon, "effects_failed"));
	if (s->unreadable)
		printf("Unreadable:      %" PRIu64 " stored records\n", s->unreadable);
	for (size_t i = 0; i < s->nattention; i++)
		printf("%s %s\n", i == 0 ? "Attention:      " : "                ", s->attention[i]);
}

/* --- JSON ------------------------------------------------------------------ */

static void
status_json_add(json_object *o, const char *key, json_object *from, const char *fkey)
{
	json_object *v;

	if (from && json_object_object_get_ex(from, fkey, &v))
		json_object_object_add(o, key, json_object_get(v));
	else
		json_object_object_add(o, key, NULL);
}

static json_object *
status_json_counts(const struct status *s)
{
	json_object *o = json_object_new_object(), *by = json_object_new_object();

	for (size_t i = 0; i < TS__COUNT; i++)
		if (s->by_state[i])
			json_object_object_add(by, engine_state_name((enum tstate)i),
			    json_object_new_int64((int64_t)s->by_state[i]));
	json_object_object_add(o, "total", json_object_new_int64((int64_t)s->tickets));
	json_object_object_add(o, "by_state", by);
	return o;
}

/* The daemon's per-table entries with their times as RFC 3339. */
static json_object *
status_json_tables(const struct status *s)
{
	json_object *out = json_object_new_object(), *tables;

	if (s->daemon == NULL || !json_object_object_get_ex(s->daemon, "tables", &tables))
		return out;
	json_object_object_foreach(tables, name, t) {
		json_object *e = json_object_new_object();
		json_object_object_add(e, "last_ok", ctl_json_time(status_int(t, "last_ok")));
		status_json_add(e, "watermark", t, "watermark");
		status_json_add(e, "last_error", t, "last_error");
		status_json_add(e, "sweep_runs", t, "sweep_runs");
		status_json_add(e, "sweep_missed", t, "sweep_missed");
		status_json_add(e, "sweep_last_requests", t, "sweep_last_requests");
		status_json_add(e, "sweep_last_ms", t, "sweep_last_ms");
		status_json_add(e, "late_records", t, "late_records");
		status_json_add(e, "late_max_lag", t, "late_max_lag");
		json_object_object_add(out, name, e);
	}
	return out;
}

static void
status_json(struct ctl *c, const struct status *s, int code)
{
	json_object *o = json_object_new_object(), *ob = json_object_new_object(),
	    *att = json_object_new_array();
	static const char *copy[] = { "pid", "feed_last_error", "snow_requests",
	    "snow_budget_used", "snow_rate_limited", "snow_budget_waits", "imperai_requests",
	    "imperai_budget_used", "imperai_rate_limited", "effects_done", "effects_failed" };

	json_object_object_add(o, "running", json_object_new_boolean(s->running));
	json_object_object_add(o, "not_running_because", ctl_json_str(s->why_down));
	json_object_object_add(o, "exit_code", json_object_new_int(code));
	json_object_object_add(o, "started", ctl_json_time(status_int(s->daemon, "started")));
	json_object_object_add(o, "updated", ctl_json_time(status_int(s->daemon, "updated")));
	for (size_t i = 0; i < ARRAY_SIZE(copy); i++)
		status_json_add(o, copy[i], s->daemon, copy[i]);
	json_object_object_add(o, "feed_last_ok", ctl_json_time(status_int(s->daemon,
	    "feed_last_ok")));
	json_object_object_add(o, "tables", status_json_tables(s));
	json_object_object_add(o, "tickets", status_json_counts(s));
	json_object_object_add(ob, "pending", json_object_new_int64((int64_t)s->outbox));
	json_object_object_add(ob, "parked", json_object_new_int64((int64_t)s->parked));
	json_object_object_add(ob, "oldest_age", s->oldest ?
	    json_object_new_int64(c->now - s->oldest) : NULL);
	json_object_object_add(o, "outbox", ob);
	for (size_t i = 0; i < s->nattention; i++)
		json_object_array_add(att, json_object_new_string(s->attention[i]));
	json_object_object_add(o, "attention", att);
	printf("%s\n", json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

/* A fresh install: the state directory is there, the daemon never ran. */
static int
status_never_ran(struct ctl *c, int json)
{
	struct status s;

	memset(&s, 0, sizeof(s));
	s.why_down = xprintf("it has never run with the state directory %s", c->state_dir);
	if (json)
		status_json(c, &s, CTL_EX_NOT_RUNNING);
	else
		status_text(c, &s);
	status_free(&s);
	return CTL_EX_NOT_RUNNING;
}

int
ctl_cmd_status(struct ctl *c, int argc, char **argv)
{
	struct status s;
	int json = 0, rc;

	memset(&s, 0, sizeof(s));
	if ((rc = ctl_flag_opts(c, argc, argv, "status", "json", 'j', &json, 0)) >= 0)
		return rc;
	if ((rc = ctl_open(c, CTL_OPEN_MAYBE_NEW)) == CTL_EX_NOT_RUNNING)
		return status_never_ran(c, json);
	if (rc != 0)
		return rc;
	if (status_read(c, &s) != 0) {
		status_free(&s);
		return CTL_EX_ERROR;
	}
	status_running(c, &s);
	status_checks(c, &s);
	rc = !s.running ? CTL_EX_NOT_RUNNING : s.nattention ? CTL_EX_ATTENTION : CTL_EX_OK;
	if (json)
		status_json(c, &s, rc);
	else
		status_text(c, &s);
	status_free(&s);
	return rc;
}
