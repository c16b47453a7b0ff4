/* report: what the daemon tells about itself.  The status (into the
 * store, for imperai-snowctl status) every LOOP_STATUS_EVERY_MS, the
 * metrics file every metrics_interval, and the counts behind them, taken
 * as decisions commit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "config.h"
#include "hmap.h"
#include "http.h"
#include "imperai.h"
#include "log.h"
#include "loopd.h"
#include "metrics.h"
#include "store.h"
#include "util.h"

/* --- counting ------------------------------------------------------------------------- */

void
report_before(const struct ticket *t, struct report_before *b)
{
	b->generation = t->generation;
	b->status = t->v.status;
	b->action = t->v.action.status;
}

/* Counted with the step, so a step discarded by a failed commit does not count. */
void
report_after(struct loop *l, const struct report_before *b, const struct ticket *t)
{
	int ri = metrics_result_index(t->v.status);
	enum imperai_risk rk;

	if (t->generation > b->generation)
		l->m_step.tracked++;
	if (ri >= 0 && metrics_result_index(b->status) < 0) {
		rk = imperai_risk_level(t->v.risk_score, l->cfg->imperai.risk_verified_max,
		    l->cfg->imperai.risk_medium_max);
		l->m_step.outcomes[ri][(unsigned)rk < METRICS_NRISKS ? rk : IMPERAI_RISK_UNKNOWN]++;
	}
	if (t->v.action.status != b->action && t->v.action.status == IMPERAI_ACTION_COMPLETED)
		l->m_step.actions_completed++;
	if (t->v.action.status != b->action && t->v.action.status == IMPERAI_ACTION_FAILED)
		l->m_step.actions_failed++;
}

void
report_patched(struct loop *l, const struct effect *e, int resolving, const struct ticket *t)
{
	l->m_step.writes[EFFECT_PATCH]++;
	if (str_eq(e->tag, "link"))
		l->m_step.fields_injected++;
	/* engine_patched() steps back from resolved when ServiceNow did not resolve. */
	if (resolving && (t->state == TS_RESOLVED || t->state == TS_CLOSED))
		l->m_step.auto_resolved++;
}

/* Tickets by state follow every committed change (no scan per interval). */
void
report_committed(struct loop *l)
{
	struct hmap_iter it = { 0 };
	void *p;

	while (l->m_counted && hmap_next(l->cache, &it, NULL, &p)) {
		struct lticket *x = p;

		if (!x->dirty)
			continue;
		if (x->loaded_state >= 0 && l->m_tickets[x->loaded_state] > 0)
			l->m_tickets[x->loaded_state]--;
		if (!x->forget)
			l->m_tickets[x->t.state]++;
		x->loaded_state = x->forget ? -1 : (int)x->t.state;
	}
	metrics_counts_add(&l->m_total, &l->m_step);
	memset(&l->m_step, 0, sizeof(l->m_step));
}

static int
report_count_fn(const char *table, const char *sys_id, const void *val, size_t len, void *arg)
{
	uint64_t *v = arg;
	enum tstate s;

	(void)table;
	(void)sys_id;
	if (codec_ticket_peek_state(val, len, &s) == 0)
		v[s]++;
	return 0;
}

/* The one scan of the tickets, before the first metrics file: not at
 * start, where it would read every page of a large store (3 GB for a
 * million tickets) whether metrics are wanted or not. */
static void
report_count(struct loop *l)
{
	struct store_txn *txn;

	memset(l->m_tickets, 0, sizeof(l->m_tickets));
	l->m_counted = 1;
	if (store_begin(l->st, 1, &txn) < 0)
		return;
	if (store_ticket_each(txn, report_count_fn, l->m_tickets) < 0)
		log_kv(LOG_LVL_WARN, "cannot count the tickets by state for the metrics", NULL);
	store_abort(txn);
}

/* --- the metrics file --------------------------------------------------------------------- */

static int
report_outbox_fn(uint64_t seq, const void *val, size_t len, void *arg)
{
	static const char parked[] = "\"not_before\":253402300799";
	struct metrics *m = arg;
	struct effect e;

	(void)seq;
	if (m->outbox++ == 0 && codec_effect_decode(val, len, &e, NULL) == 0) {
		/* seq order is decision order: the first entry is the oldest */
		m->outbox_oldest = e.created_at;
		effect_free(&e);
	}
	/* the stored form of a parked entry (OUTBOX_PARKED_AT), without decoding each */
	if (memmem(val, len, parked, sizeof(parked) - 1) != NULL)
		m->outbox_parked++;
	return 0;
}

void
report_service(struct metrics_service *out, const struct metrics_service *base,
    struct http_pool *pool)
{
	struct http_pool_stats st;

	*out = *base;
	if (pool == NULL)
		return;
	http_pool_stats(pool, &st);
	for (size_t i = 0; i < ARRAY_SIZE(out->by_status); i++)
		out->by_status[i] += st.by_status[i];
	out->retries += st.retries;
	out->rate_limited += st.rate_limited;
	out->budget_waits += st.budget_waits;
}

static void
report_gather_services(struct loop *l, struct metrics *m)
{
	m->nsvc = 2;
	report_service(&m->svc[0], &l->m_base[0], l->snow ? snow_client_pool(l->snow) : NULL);
	report_service(&m->svc[1], &l->m_base[1], l->imp ? imperai_client_pool(l->imp) : NULL);
	for (size_t i = 0; i < l->npolls; i++)
		if (i == 0 || l->polls[i].last_ok < m->svc[0].last_poll_ok)
			m->svc[0].last_poll_ok = l->polls[i].last_ok;
	m->svc[1].last_poll_ok = l->feed_last_ok;
}

static void
report_gather(struct loop *l, struct metrics *m, struct metrics_table *tabs)
{
	struct store_txn *txn;

	memset(m, 0, sizeof(*m));
	m->version = PACKAGE_VERSION;
	m->now = loop_wall();
	m->started = l->started;
	m->c = l->m_total;
	memcpy(m->write_failures, l->m_write_failures, sizeof(m->write_failures));
	memcpy(m->tickets, l->m_tickets, sizeof(m->tickets));
	for (size_t i = 0; i < l->npolls; i++) {
		tabs[i].name = l->polls[i].table;
		tabs[i].seen = l->polls[i].seen;
		sweep_metrics(l->sweep, i, &tabs[i]);
	}
	m->tables = tabs;
	m->ntables = l->npolls;
	report_gather_services(l, m);
	if (store_begin(l->st, 1, &txn) == 0) {
		store_outbox_each(txn, report_outbox_fn, m);
		store_abort(txn);
	}
}

static void
report_metrics(struct loop *l)
{
	struct metrics_table *tabs = xcalloc(l->npolls ? l->npolls : 1, sizeof(*tabs));
	struct metrics m;
	char *text, *cause = NULL;

	if (!l->m_counted)
		report_count(l);
	report_gather(l, &m, tabs);
	text = metrics_format(&m);
	if (metrics_write_file(l->cfg->metrics_file, text, &cause) < 0) {
		/* once per failing streak, not every interval */
		if (!l->metrics_failing)
			log_kv(LOG_LVL_WARN, "cannot write the metrics file", "error", cause, NULL);
		l->metrics_failing = 1;
	} else if (l->metrics_failing) {
		log_kv(LOG_LVL_NOTICE, "metrics file written again", "file",
		    l->cfg->metrics_file, NULL);
		l->metrics_failing = 0;
	}
	free(cause);
	free(text);
	free(tabs);
}

/* --- the status --------------------------------------------------------------------------- */

static void
report_status_tables(const struct loop *l, json_object *o)
{
	json_object *tabs = json_object_new_object();
	char buf[32];

	for (size_t i = 0; i < l->npolls; i++) {
		json_object *t = json_object_new_object();

		json_object_object_add(t, "last_ok", json_object_new_int64(l->polls[i].last_ok));
		util_format_snow_time(l->polls[i].wm.updated_on, buf);
		json_object_object_add(t, "watermark", json_object_new_string(buf));
		if (l->polls[i].last_error)
			json_object_object_add(t, "last_error",
			    json_object_new_string(l->polls[i].last_error));
		sweep_status(l->sweep, i, t);
		json_object_object_add(tabs, l->polls[i].table, t);
	}
	json_object_object_add(o, "tables", tabs);
}

static void
report_status_pools(const struct loop *l, json_object *o)
{
	struct http_pool_stats ss, is;

	if (l->snow == NULL || l->imp == NULL)
		return;
	http_pool_stats(snow_client_pool(l->snow), &ss);
	http_pool_stats(imperai_client_pool(l->imp), &is);
	json_object_object_add(o, "snow_requests", json_object_new_int64((int64_t)ss.requests));
	json_object_object_add(o, "snow_budget_used", json_object_new_int(ss.budget_used));
	json_object_object_add(o, "snow_rate_limited", json_object_new_int64((int64_t)ss.rate_limited));
	json_object_object_add(o, "snow_budget_waits", json_object_new_int64((int64_t)ss.budget_waits));
	json_object_object_add(o, "imperai_requests", json_object_new_int64((int64_t)is.requests));
	json_object_object_add(o, "imperai_budget_used", json_object_new_int(is.budget_used));
	json_object_object_add(o, "imperai_rate_limited", json_object_new_int64((int64_t)is.rate_limited));
}

static void
report_status(struct loop *l)
{
	json_object *o = json_object_new_object();
	struct store_txn *txn;
	const char *s;

	json_object_object_add(o, "pid", json_object_new_int64(getpid()));
	json_object_object_add(o, "started", json_object_new_int64(l->started));
	json_object_object_add(o, "updated", json_object_new_int64(loop_wall()));
	report_status_tables(l, o);
	json_object_object_add(o, "feed_last_ok", json_object_new_int64(l->feed_last_ok));
	if (l->feed_last_error)
		json_object_object_add(o, "feed_last_error", json_object_new_string(l->feed_last_error));
	report_status_pools(l, o);
	json_object_object_add(o, "effects_done", json_object_new_int64((int64_t)l->stat_effects_done));
	json_object_object_add(o, "effects_failed", json_object_new_int64((int64_t)l->stat_effects_failed));
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (store_begin(l->st, 0, &txn) == 0) {
		store_meta_put(txn, "daemon/status", s, strlen(s));
		/* Already said when the store is failing. */
		if (store_commit(txn) < 0)
			log_kv(l->store_failing ? LOG_LVL_DEBUG : LOG_LVL_WARN,
			    "cannot record the daemon's status in the store", NULL);
	}
	json_object_put(o);
}

static int
report_metrics_wanted(const struct loop *l)
{
	return l->cfg->metrics_file && *l->cfg->metrics_file;
}

void
report_write(struct loop *l)
{
	if (loop_now_ms() - l->status_ms > LOOP_STATUS_EVERY_MS) {
		report_status(l);
		l->status_ms = loop_now_ms();
	}
	if (report_metrics_wanted(l) && loop_now_ms() >= l->metrics_ms) {
		report_metrics(l);
		l->metrics_ms = loop_now_ms() + (int64_t)l->cfg->metrics_interval * 1000;
	}
}

int64_t
report_next_ms(const struct loop *l, int64_t until)
{
	int64_t next = l->status_ms + LOOP_STATUS_EVERY_MS;

	if (until < next)
		next = until;
	if (report_metrics_wanted(l) && l->metrics_ms < next)
		next = l->metrics_ms;
	return next;
}
