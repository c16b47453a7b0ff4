/* metrics: Prometheus text exposition of the daemon's numbers, and its
 * atomic file write (see metrics.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "metrics.h"
#include "util.h"

#define M_PREFIX	"imperai_snow_"

static const char *const metrics_results[METRICS_NRESULTS] = {
	"passed", "failed", "timed_out", "not_enough_questions", "canceled",
};

static const char *const metrics_risks[METRICS_NRISKS] = {
	[IMPERAI_RISK_UNKNOWN] = "unknown",
	[IMPERAI_RISK_VERIFIED] = "verified",
	[IMPERAI_RISK_MEDIUM] = "medium",
	[IMPERAI_RISK_HIGH] = "high",
};

static const char *const metrics_effects[3] = {
	[EFFECT_CREATE] = "create",
	[EFFECT_CANCEL] = "cancel",
	[EFFECT_PATCH] = "patch",
};

static const char *const metrics_classes[6] = { "error", "1xx", "2xx", "3xx", "4xx", "5xx" };

int
metrics_result_index(enum imperai_status s)
{
	switch (s) {
	case IMPERAI_PASSED:
		return 0;
	case IMPERAI_FAILED:
		return 1;
	case IMPERAI_TIMED_OUT:
		return 2;
	case IMPERAI_NOT_ENOUGH_QUESTIONS:
		return 3;
	case IMPERAI_CANCELED:
		return 4;
	default:
		return -1;
	}
}

void
metrics_counts_add(struct metrics_counts *a, const struct metrics_counts *b)
{
	a->tracked += b->tracked;
	a->fields_injected += b->fields_injected;
	a->auto_resolved += b->auto_resolved;
	for (size_t i = 0; i < ARRAY_SIZE(a->writes); i++)
		a->writes[i] += b->writes[i];
	for (size_t i = 0; i < METRICS_NRESULTS; i++)
		for (size_t k = 0; k < METRICS_NRISKS; k++)
			a->outcomes[i][k] += b->outcomes[i][k];
	a->actions_completed += b->actions_completed;
	a->actions_failed += b->actions_failed;
}

/* HELP text escapes \ and newline; label values also ". */
static void
metrics_escape(struct buf *b, const char *s, int label)
{
	for (; s != NULL && *s != '\0'; s++) {
		if (*s == '\\')
			buf_adds(b, "\\\\");
		else if (*s == '\n')
			buf_adds(b, "\\n");
		else if (*s == '"' && label)
			buf_adds(b, "\\\"");
		else
			buf_addc(b, *s);
	}
}

static void
metrics_family(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_addf(b, "# HELP " M_PREFIX "%s ", name);
	metrics_escape(b, help, 0);
	buf_addf(b, "\n# TYPE " M_PREFIX "%s %s\n", name, type);
}

/* One sample; labels is NULL or "k", "v", ..., NULL pairs (at most 2). */
static void
metrics_sample(struct buf *b, const char *name, int64_t value, const char *k1, const char *v1,
    const char *k2, const char *v2)
{
	buf_addf(b, M_PREFIX "%s", name);
	if (k1 != NULL) {
		buf_addf(b, "{%s=\"", k1);
		metrics_escape(b, v1, 1);
		buf_addc(b, '"');
		if (k2 != NULL) {
			buf_addf(b, ",%s=\"", k2);
			metrics_escape(b, v2, 1);
			buf_addc(b, '"');
		}
		buf_addc(b, '}');
	}
	buf_addf(b, " %" PRId64 "\n", value);
}

static void
metrics_one(struct buf *b, const char *name, const char *type, const char *help, int64_t v)
{
	metrics_family(b, name, type, help);
	metrics_sample(b, name, v, NULL, NULL, NULL, NULL);
}

static int64_t
metrics_u(uint64_t v)
{
	return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

static void
metrics_process(struct buf *b, const struct metrics *m)
{
	metrics_family(b, "info", "gauge", "Version of the running imperai-snowd (always 1).");
	metrics_sample(b, "info", 1, "version", m->version ? m->version : "unknown", NULL, NULL);
	metrics_one(b, "start_time_seconds", "gauge",
	    "When the daemon started, in UNIX seconds.", m->started);
}

/* One counter family with a sample per table, the field at off. */
static void
metrics_table_u(struct buf *b, const struct metrics *m, const char *name, const char *type,
    const char *help, size_t off)
{
	metrics_family(b, name, type, help);
	for (size_t i = 0; i < m->ntables; i++) {
		const char *base = (const char *)&m->tables[i];
		uint64_t v;

		memcpy(&v, base + off, sizeof(v));
		metrics_sample(b, name, metrics_u(v), "table", m->tables[i].name, NULL, NULL);
	}
}

static void
metrics_tickets(struct buf *b, const struct metrics *m)
{
	metrics_family(b, "tickets_seen_total", "counter",
	    "ServiceNow records read by the poll, by table (a ticket read again counts again).");
	for (size_t i = 0; i < m->ntables; i++)
		metrics_sample(b, "tickets_seen_total", metrics_u(m->tables[i].seen), "table",
		    m->tables[i].name, NULL, NULL);
	metrics_table_u(b, m, "sweep_runs_total", "counter",
	    "Reconciliation sweeps completed, by table.", offsetof(struct metrics_table, sweep_runs));
	metrics_table_u(b, m, "sweep_records_total", "counter",
	    "Records read by the reconciliation sweeps, by table.",
	    offsetof(struct metrics_table, sweep_records));
	metrics_table_u(b, m, "sweep_missed_total", "counter",
	    "Tickets the sweep found that the poll had missed, by table.",
	    offsetof(struct metrics_table, sweep_missed));
	metrics_table_u(b, m, "late_records_total", "counter",
	    "Records the poll saw older than its watermark minus poll_overlap, by table.",
	    offsetof(struct metrics_table, late_records));
	metrics_family(b, "late_record_max_lag_seconds", "gauge",
	    "Largest lag of such a record behind the watermark, by table.");
	for (size_t i = 0; i < m->ntables; i++)
		metrics_sample(b, "late_record_max_lag_seconds", m->tables[i].late_max_lag, "table",
		    m->tables[i].name, NULL, NULL);
	metrics_one(b, "tickets_tracked_total", "counter",
	    "Tickets that began a verification (new tickets matching a flow, restarts).",
	    metrics_u(m->c.tracked));
	metrics_family(b, "tickets", "gauge", "Tickets in the state store, by state.");
	for (int s = TS_UNTRACKED; s < TS__COUNT; s++)
		metrics_sample(b, "tickets", metrics_u(m->tickets[s]), "state",
		    engine_state_name((enum tstate)s), NULL, NULL);
}

static void
metrics_verifications(struct buf *b, const struct metrics *m)
{
	metrics_one(b, "fields_injected_total", "counter",
	    "Verification links written into a ticket's field (link PATCHes that landed).",
	    metrics_u(m->c.fields_injected));
	metrics_family(b, "outcomes_total", "counter",
	    "Final verification results reported by imper.ai, by result and risk level.");
	for (size_t i = 0; i < METRICS_NRESULTS; i++)
		for (size_t k = 0; k < METRICS_NRISKS; k++)
			metrics_sample(b, "outcomes_total", metrics_u(m->c.outcomes[i][k]),
			    "result", metrics_results[i], "risk", metrics_risks[k]);
	metrics_family(b, "actions_total", "counter",
	    "Requested actions (such as a password reset) that imper.ai reported finished.");
	metrics_sample(b, "actions_total", metrics_u(m->c.actions_completed), "status",
	    "completed", NULL, NULL);
	metrics_sample(b, "actions_total", metrics_u(m->c.actions_failed), "status", "failed",
	    NULL, NULL);
	metrics_one(b, "auto_resolved_total", "counter",
	    "Tickets resolved or closed by the daemon (the resolving PATCH landed and held).",
	    metrics_u(m->c.auto_resolved));
}

static void
metrics_writes(struct buf *b, const struct metrics *m)
{
	metrics_family(b, "writes_total", "counter",
	    "Writes carried out: imper.ai creates and cancels, ServiceNow PATCHes.");
	for (size_t i = 0; i < ARRAY_SIZE(metrics_effects); i++)
		metrics_sample(b, "writes_total", metrics_u(m->c.writes[i]), "effect",
		    metrics_effects[i], NULL, NULL);
	metrics_family(b, "write_failures_total", "counter",
	    "Write attempts that failed (retried later, or refused for good).");
	for (size_t i = 0; i < ARRAY_SIZE(metrics_effects); i++)
		metrics_sample(b, "write_failures_total", metrics_u(m->write_failures[i]), "effect",
		    metrics_effects[i], NULL, NULL);
	metrics_one(b, "outbox_entries", "gauge",
	    "Writes committed and not yet carried out.", metrics_u(m->outbox));
	metrics_one(b, "outbox_parked_entries", "gauge",
	    "Writes parked after repeated failures (tried again every servicenow.parked_retry; "
	    "imperai-snowctl retry releases them at once).",
	    metrics_u(m->outbox_parked));
	metrics_one(b, "outbox_oldest_age_seconds", "gauge",
	    "Age of the oldest pending write (0 when there is none).",
	    m->outbox_oldest > 0 && m->now > m->outbox_oldest ? m->now - m->outbox_oldest : 0);
}

static void
metrics_http_status(struct buf *b, const struct metrics *m)
{
	metrics_family(b, "http_requests_total", "counter",
	    "HTTP requests sent (retries included), by service and status class "
	    "(error: no answer).");
	for (size_t i = 0; i < m->nsvc; i++)
		for (size_t k = 0; k < ARRAY_SIZE(metrics_classes); k++)
			metrics_sample(b, "http_requests_total", metrics_u(m->svc[i].by_status[k]),
			    "service", m->svc[i].name, "code", metrics_classes[k]);
}

static void
metrics_http_counter(struct buf *b, const struct metrics *m, const char *name,
    const char *help, size_t field)
{
	metrics_family(b, name, "counter", help);
	for (size_t i = 0; i < m->nsvc; i++) {
		const struct metrics_service *s = &m->svc[i];
		uint64_t v = field == 0 ? s->retries : field == 1 ? s->rate_limited : s->budget_waits;

		metrics_sample(b, name, metrics_u(v), "service", s->name, NULL, NULL);
	}
}

static void
metrics_polls(struct buf *b, const struct metrics *m)
{
	metrics_family(b, "last_poll_success_timestamp_seconds", "gauge",
	    "When the last poll of the service succeeded, in UNIX seconds (0: not yet).");
	for (size_t i = 0; i < m->nsvc; i++)
		metrics_sample(b, "last_poll_success_timestamp_seconds", m->svc[i].last_poll_ok,
		    "service", m->svc[i].name, NULL, NULL);
	metrics_family(b, "last_poll_age_seconds", "gauge",
	    "Seconds since the last successful poll of the service (since the start when "
	    "none succeeded yet); ServiceNow: its least recently polled table.");
	for (size_t i = 0; i < m->nsvc; i++) {
		int64_t since = m->svc[i].last_poll_ok > 0 ? m->svc[i].last_poll_ok : m->started;

		metrics_sample(b, "last_poll_age_seconds", m->now > since ? m->now - since : 0,
		    "service", m->svc[i].name, NULL, NULL);
	}
}

char *
metrics_format(const struct metrics *m)
{
	struct buf b;

	buf_init(&b);
	metrics_process(&b, m);
	metrics_tickets(&b, m);
	metrics_verifications(&b, m);
	metrics_writes(&b, m);
	metrics_http_status(&b, m);
	metrics_http_counter(&b, m, "http_retries_total",
	    "Requests sent again after a transport error or a 5xx answer.", 0);
	metrics_http_counter(&b, m, "http_rate_limited_total",
	    "429 answers: the pool waits for Retry-After.", 1);
	metrics_http_counter(&b, m, "http_budget_waits_total",
	    "Requests held back by the own hourly request budget.", 2);
	metrics_polls(&b, m);
	return buf_detach(&b);
}

static int
metrics_fail(char **cause, const char *what, const char *path, int err)
{
	*cause = xprintf("%s %s: %s", what, path, strerror(err));
	return -err;
}

static int
metrics_write_all(int fd, const char *text)
{
	size_t len = strlen(text), off = 0;
	ssize_t n;

	while (off < len) {
		n = write(fd, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		off += (size_t)n;
	}
	return 0;
}

/* fsync of the directory, so the rename itself survives a crash. */
static int
metrics_sync_dir(const char *path)
{
	char *dir = xstrdup(path), *slash = strrchr(dir, '/');
	int fd, rc = 0;

	if (slash == dir)
		slash[1] = '\0';
	else if (slash != NULL)
		*slash = '\0';
	else
		strcpy(dir, ".");
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	free(dir);
	return rc;
}

int
metrics_write_file(const char *path, const char *text, char **cause)
{
	char *tmp = xprintf("%s.tmp.%ld", path, (long)getpid());
	int fd, rc = 0;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		rc = metrics_fail(cause, "cannot create", tmp, errno);
		goto out;
	}
	/* The umask (0077 under the unit) must not hide the file from the collector. */
	if (fchmod(fd, 0644) < 0 || (rc = metrics_write_all(fd, text)) < 0 || fsync(fd) < 0) {
		rc = metrics_fail(cause, "cannot write", tmp, rc < 0 ? -rc : errno);
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		rc = metrics_fail(cause, "cannot replace", path, errno);
		unlink(tmp);
		goto out;
	}
	if ((rc = metrics_sync_dir(path)) < 0)
		metrics_fail(cause, "cannot sync the directory of", path, -rc);
out:
	free(tmp);
	return rc;
}
