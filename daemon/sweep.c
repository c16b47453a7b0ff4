/* sweep: the reconciliation sweep (see sweep.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "flows.h"
#include "log.h"
#include "metrics.h"
#include "snow.h"
#include "sweep.h"
#include "util.h"

/* Pages in a row hidden by ACLs before a run gives up (as the poll does). */
#define SWEEP_MAX_HIDDEN_PAGES	1000

struct sweep_table {
	struct sweep		*sw;
	size_t			 i;
	char			*table;
	char			*filter;
	struct snow_watermark	 cur;
	int			 offset;
	int			 hidden_pages;
	int			 inflight;
	int64_t			 next_ms;
	int64_t			 started_ms;
	int64_t			 wm;		/* poll watermark when the run began */
	const char *const	*fields;	/* borrowed from the poll for the run */
	size_t			 nfields;
	struct sweep_env	 env;
	/* counters */
	uint64_t		 runs, records, missed, late;
	int64_t			 max_lag;
	int64_t			 last_ms;	/* duration of the last run */
	uint64_t		 last_requests;
	uint64_t		 requests;	/* of the run in progress */
};

struct sweep {
	struct sweep_table	*t;
	size_t			 n;
	int			 interval;
};

struct sweep *
sweep_new(size_t ntables, int64_t now_ms, int interval_s)
{
	struct sweep *sw = xcalloc(1, sizeof(*sw));

	sw->t = xcalloc(ntables ? ntables : 1, sizeof(*sw->t));
	sw->n = ntables;
	sw->interval = interval_s;
	for (size_t i = 0; i < ntables; i++) {
		sw->t[i].sw = sw;
		sw->t[i].i = i;
		sw->t[i].next_ms = interval_s > 0 ? now_ms + (int64_t)interval_s * 1000 : INT64_MAX;
	}
	return sw;
}

void
sweep_free(struct sweep *sw)
{
	if (sw == NULL)
		return;
	for (size_t i = 0; i < sw->n; i++) {
		free(sw->t[i].table);
		free(sw->t[i].filter);
	}
	free(sw->t);
	free(sw);
}

static int
sweep_has(char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return 1;
	return 0;
}

char *
sweep_filter(const struct flows *flows, const char *table)
{
	char **cats = NULL;
	size_t ncats = 0;
	struct buf b;

	for (size_t i = 0; flows != NULL && i < flows->n; i++) {
		const struct flow *f = &flows->v[i];
		if (!str_eq(f->table, table))
			continue;
		if (f->ncategories == 0) {	/* a query-only flow: every active ticket */
			free(cats);
			return xstrdup("active=true");
		}
		for (size_t k = 0; k < f->ncategories; k++)
			if (!sweep_has(cats, ncats, f->categories[k])) {
				cats = xreallocarray(cats, ncats + 1, sizeof(*cats));
				cats[ncats++] = f->categories[k];
			}
	}
	buf_init(&b);
	buf_adds(&b, "active=true");
	for (size_t k = 0; k < ncats; k++)
		buf_addf(&b, "%s%s", k ? "," : "^categoryIN", cats[k]);
	free(cats);
	return buf_detach(&b);
}

static int64_t
sweep_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sweep_submit(struct sweep_table *st);

static void
sweep_end(struct sweep_table *st)
{
	char ms[24], req[24], n[24];

	st->inflight = 0;
	st->runs++;
	st->last_ms = sweep_now_ms() - st->started_ms;
	st->last_requests = st->requests;
	st->next_ms = sweep_now_ms() + (int64_t)st->sw->interval * 1000;
	snprintf(ms, sizeof(ms), "%" PRId64, st->last_ms);
	snprintf(req, sizeof(req), "%" PRIu64, st->requests);
	snprintf(n, sizeof(n), "%" PRIu64, st->missed);
	log_kv(LOG_LVL_DEBUG, "sweep done", "table", st->table, "requests", req, "ms", ms,
	    "missed_total", n, NULL);
}

/* A ticket the poll never saw: its lag behind the watermark says by how
 * much poll_overlap fell short. */
static void
sweep_missed(struct sweep_table *st, const struct snow_record *r)
{
	int64_t lag = st->wm - r->updated_on;
	char lagbuf[24], overlap[24];
	const char *number = snow_record_get(r, "number");

	st->missed++;
	if (lag <= 0)
		lag = 0;
	snprintf(lagbuf, sizeof(lagbuf), "%" PRId64, lag);
	snprintf(overlap, sizeof(overlap), "%d", st->env.cfg->snow.poll_overlap);
	log_kv(LOG_LVL_WARN, "sweep found a ticket the poll missed", "table", st->table,
	    "ticket", number, "lag", lagbuf, NULL);
	if (lag > st->env.cfg->snow.poll_overlap) {
		st->late++;
		if (lag > st->max_lag)
			st->max_lag = lag;
		log_kv(LOG_LVL_WARN, "record became visible later than poll_overlap allows: raise "
		    "servicenow.poll_overlap above the lag", "table", st->table, "ticket", number,
		    "lag", lagbuf, "poll_overlap", overlap, NULL);
	}
}

/* Reads on after a page?  As the poll: a short page may hide rows by ACL. */
static int
sweep_more(struct sweep_table *st, const struct snow_list *page)
{
	int limit = st->env.cfg->snow.page_size > 0 ? st->env.cfg->snow.page_size : 100;
	int more = page->n >= (size_t)limit ||
	    (page->total >= 0 && page->total > (int64_t)st->offset + limit);

	if (page->n > 0 || !more) {
		st->offset = 0;
		st->hidden_pages = 0;
		return more;
	}
	if (++st->hidden_pages > SWEEP_MAX_HIDDEN_PAGES)
		return 0;
	st->offset += limit - limit / 4;
	return 1;
}

static void
sweep_done(int err, const char *cause, struct snow_list *page, void *arg)
{
	struct sweep_table *st = arg;

	if (err < 0) {
		if (err != -ECANCELED)
			log_kv(LOG_LVL_WARN, "sweep failed: will run again at the next interval",
			    "table", st->table, "error", cause ? cause : strerror(-err), NULL);
		st->inflight = 0;
		st->next_ms = sweep_now_ms() + (int64_t)st->sw->interval * 1000;
		return;
	}
	/* newer than the watermark minus the overlap: the poll reads it anyway */
	for (size_t i = 0; i < page->n; i++)
		if (st->env.observe(st->env.arg, st->table, &page->v[i]) == 1 &&
		    page->v[i].updated_on < st->wm - st->env.cfg->snow.poll_overlap)
			sweep_missed(st, &page->v[i]);
	st->records += page->n;
	if (page->n > 0) {
		st->cur.updated_on = page->v[page->n - 1].updated_on;
		memcpy(st->cur.sys_id, page->v[page->n - 1].sys_id, sizeof(st->cur.sys_id));
	}
	if (sweep_more(st, page))
		sweep_submit(st);
	else
		sweep_end(st);
}

static void
sweep_submit(struct sweep_table *st)
{
	char *cause = NULL;

	st->requests++;
	if (snow_list_page(st->env.snow, st->table, st->filter, &st->cur, st->offset,
	    st->fields, st->nfields, sweep_done, st, &cause) < 0) {
		log_kv(LOG_LVL_ERR, "cannot sweep table", "table", st->table, "error", cause, NULL);
		free(cause);
		st->inflight = 0;
		st->next_ms = sweep_now_ms() + (int64_t)st->sw->interval * 1000;
	}
}

void
sweep_schedule(struct sweep *sw, size_t i, const char *table, const char *const *fields,
    size_t nfields, int64_t wm_updated_on, const struct sweep_env *env, int64_t now_ms)
{
	struct sweep_table *st;

	if (sw == NULL || i >= sw->n || sw->interval <= 0)
		return;
	st = &sw->t[i];
	if (st->inflight || now_ms < st->next_ms)
		return;
	str_replace(&st->table, table);
	free(st->filter);
	st->filter = sweep_filter(env->flows, table);
	st->env = *env;
	st->fields = fields;
	st->nfields = nfields;
	st->wm = wm_updated_on;
	memset(&st->cur, 0, sizeof(st->cur));
	st->offset = 0;
	st->hidden_pages = 0;
	st->requests = 0;
	st->started_ms = now_ms;
	st->inflight = 1;
	sweep_submit(st);
}

int64_t
sweep_next_ms(const struct sweep *sw)
{
	int64_t next = INT64_MAX;

	for (size_t i = 0; sw != NULL && i < sw->n; i++)
		if (!sw->t[i].inflight && sw->t[i].next_ms < next)
			next = sw->t[i].next_ms;
	return next;
}

void
sweep_metrics(const struct sweep *sw, size_t i, struct metrics_table *t)
{
	if (sw == NULL || i >= sw->n)
		return;
	t->sweep_runs = sw->t[i].runs;
	t->sweep_records = sw->t[i].records;
	t->sweep_missed = sw->t[i].missed;
	t->late_records = sw->t[i].late;
	t->late_max_lag = sw->t[i].max_lag;
}

void
sweep_status(const struct sweep *sw, size_t i, json_object *t)
{
	const struct sweep_table *st;

	if (sw == NULL || i >= sw->n)
		return;
	st = &sw->t[i];
	json_object_object_add(t, "sweep_runs", json_object_new_int64((int64_t)st->runs));
	json_object_object_add(t, "sweep_missed", json_object_new_int64((int64_t)st->missed));
	json_object_object_add(t, "sweep_last_ms", json_object_new_int64(st->last_ms));
	json_object_object_add(t, "sweep_last_requests",
	    json_object_new_int64((int64_t)st->last_requests));
	json_object_object_add(t, "late_records", json_object_new_int64((int64_t)st->late));
	json_object_object_add(t, "late_max_lag", json_object_new_int64(st->max_lag));
}
