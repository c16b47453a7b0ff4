/* loop: poll -> engine -> store (state + outbox in one transaction) ->
 * drain the outbox.
 *
 * Crash safety (ARCHITECTURE.md section 6): an effect is only ever sent
 * after the state change that caused it is committed.  Before a ServiceNow
 * PATCH is sent, its outbox entry is marked attempted in a committed
 * transaction; an attempted PATCH is replayed only after reading the ticket
 * back and finding that its revision did not land.  imper.ai creates carry
 * an Idempotency-Key; cancels are idempotent. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "config.h"
#include "codec.h"
#include "engine.h"
#include "flows.h"
#include "http.h"
#include "imperai.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "outq.h"
#include "requests.h"
#include "snow.h"
#include "store.h"
#include "sweep.h"
#include "util.h"

#define LOOP_MAX_ATTEMPTS	12	/* then the entry is parked for `imperai-snowctl retry` */
#define LOOP_MAX_HIDDEN_PAGES	1000	/* empty pages in a row a poll reads past */
#define LOOP_PARKED		EFFECT_PARKED
#define LOOP_STATUS_EVERY_MS	5000

/* One ticket loaded for this step: stored at commit when dirty. */
struct lticket {
	struct lticket	*next;		/* hash chain */
	char		*key;		/* table/sys_id */
	struct ticket	 t;
	int		 dirty;
	int		 forget;
	int		 existed;
	int		 new_effects;	/* effects of this step seen by loop_commit */
	int		 loaded_state;	/* state in the store, -1 if none (metrics) */
};

/* One outbox entry being executed. */
struct job {
	struct loop	*l;
	uint64_t	 seq;
	struct effect	 e;
	int		 checking;	/* PATCH: reading the ticket back first */
	uint64_t	*gone;		/* later PATCHes of the ticket merged into this one */
	uint32_t	*revs;		/* and the revisions before e.revision it writes */
	size_t		 ngone;
};

struct tpoll {
	char			*table;
	struct snow_watermark	 wm;		/* committed position */
	struct snow_watermark	 cur;		/* position within this cycle */
	int			 inflight;
	int64_t			 next_ms;
	int64_t			 started_ms;	/* this cycle's start */
	char			**fields;
	size_t			 nfields;
	int64_t			 last_ok;	/* wall clock */
	uint64_t		 seen;
	char			*last_error;
	int			 offset;	/* rows past cur hidden by ACLs, skipped */
	int			 hidden_pages;	/* pages in a row that came back empty */
};

struct loop {
	struct config		*cfg;
	struct flows		*flows;
	struct engine_policy	 pol;
	struct store		*st;
	struct http_client	*http;
	struct snow_client	*snow;
	struct imperai_client	*imp;

	struct tpoll		*polls;
	size_t			 npolls;
	struct sweep		*sweep;		/* the reconciliation sweep (sweep.c) */
	int64_t			 unpark_ms;	/* parked writes are released again then */

	char			*cursor;	/* imper.ai change feed */
	uint64_t		 feed_epoch;
	uint64_t		 epoch;		/* bumps when a commit fails: positions reload */
	int			 feed_inflight;
	int64_t			 feed_next_ms;
	int64_t			 feed_started_ms;
	int64_t			 feed_last_ok;
	char			*feed_last_error;

	/* this step's pending writes */
	struct engine_result	*results;	/* decisions whose effects join the outbox */
	size_t			 nresults;
	struct lticket		**tbl;
	size_t			 tbl_size;
	size_t			 tbl_count;
	uint64_t		*done_seqs;	/* outbox entries finished */
	size_t			 ndone;
	struct job		**updated;	/* outbox entries to rewrite (attempts) */
	size_t			 nupdated;
	char			**audit;	/* events to append */
	size_t			 naudit;
	char			**vindex;	/* "id\tjson" verification index updates */
	size_t			 nvindex;
	int			 meta_dirty;
	int			 budget_final;	/* shutdown: store budget use without a reserve */
	int			 outbox_dirty;	/* entries added or finished: start more */
	int64_t			 outq_reload_ms;	/* after a failed commit: rebuild the index then */

	/* outbox execution */
	struct outq		*oq;		/* which entry to start next */
	int			 snow_jobs;
	int			 imp_jobs;

	int64_t			 store_failing;	/* wall clock of the first failed write, 0: none */
	int64_t			 store_nagged;
	uint64_t		 store_failures;
	int64_t			 progress_ms;
	int64_t			 status_ms;
	int64_t			 requests_ms;
	int64_t			 started;
	uint64_t		 stat_effects_done;
	uint64_t		 stat_effects_failed;

	/* metrics (section "metrics" below) */
	struct metrics_counts	 m_total;
	struct metrics_counts	 m_step;	/* this step's, added once committed */
	uint64_t		 m_tickets[TS__COUNT];
	int			 m_counted;	/* m_tickets holds the store's counts */
	uint64_t		 m_write_failures[3];
	struct metrics_service	 m_base[2];	/* pools of clients replaced by a reload */
	int64_t			 metrics_ms;
	int			 metrics_failing;
};

int64_t
loop_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
loop_wall(void)
{
	return (int64_t)time(NULL);
}

static char *
loop_key(const char *table, const char *sys_id)
{
	return xprintf("%s/%s", table, sys_id);
}

static size_t
loop_hash(const char *s)
{
	size_t h = 5381;

	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h;
}

static void
loop_log_events(const struct engine_result *r)
{
	for (size_t i = 0; i < r->nevents; i++) {
		char *line = xprintf("%s %s", r->events[i].msg, r->events[i].kv ? r->events[i].kv : "");
		log_kv((enum log_level)r->events[i].level, line, NULL);
		free(line);
	}
}

static void
loop_audit(struct loop *l, const char *kind, const char *msg, const char *kv)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "kind", json_object_new_string(kind));
	json_object_object_add(o, "msg", json_object_new_string(msg));
	if (kv)
		json_object_object_add(o, "kv", json_object_new_string(kv));
	l->audit = xreallocarray(l->audit, l->naudit + 1, sizeof(*l->audit));
	l->audit[l->naudit++] = xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
}

/* --- the step's ticket cache --------------------------------------------- */

static struct lticket *
loop_cache_find(struct loop *l, const char *key)
{
	if (l->tbl_size == 0)
		return NULL;
	for (struct lticket *lt = l->tbl[loop_hash(key) % l->tbl_size]; lt; lt = lt->next)
		if (strcmp(lt->key, key) == 0)
			return lt;
	return NULL;
}

static void
loop_cache_insert(struct loop *l, struct lticket *lt)
{
	size_t b;

	if (l->tbl_count >= l->tbl_size) {
		size_t nsize = l->tbl_size ? l->tbl_size * 2 : 256;
		struct lticket **ntbl = xcalloc(nsize, sizeof(*ntbl));

		for (size_t i = 0; i < l->tbl_size; i++) {
			for (struct lticket *x = l->tbl[i], *nx; x; x = nx) {
				nx = x->next;
				b = loop_hash(x->key) % nsize;
				x->next = ntbl[b];
				ntbl[b] = x;
			}
		}
		free(l->tbl);
		l->tbl = ntbl;
		l->tbl_size = nsize;
	}
	b = loop_hash(lt->key) % l->tbl_size;
	lt->next = l->tbl[b];
	l->tbl[b] = lt;
	l->tbl_count++;
}

static void
loop_cache_clear(struct loop *l)
{
	for (size_t i = 0; i < l->tbl_size; i++) {
		for (struct lticket *x = l->tbl[i], *nx; x; x = nx) {
			nx = x->next;
			ticket_free(&x->t);
			free(x->key);
			free(x);
		}
		l->tbl[i] = NULL;
	}
	l->tbl_count = 0;
}

/* The ticket as this step sees it: pending changes first, then the store.
 * A ticket not stored comes back fresh, in TS_UNTRACKED. */
static struct lticket *
loop_ticket(struct loop *l, const char *table, const char *sys_id)
{
	char *key = loop_key(table, sys_id), *cause = NULL;
	struct lticket *lt = loop_cache_find(l, key);
	struct store_txn *txn;
	struct buf b;
	int rc;

	if (lt != NULL) {
		free(key);
		return lt;
	}
	lt = xcalloc(1, sizeof(*lt));
	lt->key = key;
	buf_init(&b);
	rc = store_begin(l->st, 1, &txn);
	if (rc == 0) {
		rc = store_ticket_get(txn, table, sys_id, &b);
		store_abort(txn);
	}
	/* decode initialises the ticket itself. */
	lt->loaded_state = -1;
	if (rc == 0 && codec_ticket_decode(b.data, b.len, &lt->t, &cause) == 0) {
		lt->existed = 1;
		lt->loaded_state = (int)lt->t.state;
	} else {
		if (rc == 0) {
			log_kv(LOG_LVL_ERR, "stored ticket unreadable: starting it afresh",
			    "key", key, "error", cause, NULL);
			free(cause);
			ticket_free(&lt->t);
		}
		ticket_init(&lt->t, table, sys_id);
	}
	buf_free(&b);
	loop_cache_insert(l, lt);
	return lt;
}

/* Folds an engine decision into the step's pending writes. */
static void
loop_apply(struct loop *l, struct lticket *lt, struct engine_result *r)
{
	loop_log_events(r);
	for (size_t i = 0; i < r->nevents; i++)
		loop_audit(l, "engine", r->events[i].msg, r->events[i].kv);
	if (r->changed)
		lt->dirty = 1;
	if (r->forget) {
		lt->forget = 1;
		lt->dirty = 1;
	} else
		lt->forget = 0;
	if (r->neffects > 0) {
		/* Effects travel with the ticket's next commit. */
		lt->dirty = 1;
		l->outbox_dirty = 1;
	}
}

/* --- commit ----------------------------------------------------------------- */

static int
loop_commit_tickets(struct store_txn *txn, struct loop *l)
{
	char *enc;

	for (size_t i = 0; i < l->tbl_size; i++) {
		for (struct lticket *x = l->tbl[i]; x; x = x->next) {
			if (!x->dirty)
				continue;
			if (x->forget) {
				if (x->existed)
					store_ticket_del(txn, x->t.table, x->t.sys_id);
				continue;
			}
			enc = codec_ticket_encode(&x->t);
			store_ticket_put(txn, x->t.table, x->t.sys_id,
			    x->t.number ? x->t.number : "", enc, strlen(enc));
			free(enc);
		}
	}
	return store_txn_error(txn);
}

static int
loop_commit_meta(struct store_txn *txn, struct loop *l)
{
	for (size_t i = 0; i < l->npolls; i++) {
		struct tpoll *p = &l->polls[i];
		char *k = xprintf("watermark/%s", p->table);
		char *v = xprintf("%" PRId64 " %s", p->wm.updated_on, p->wm.sys_id);

		store_meta_put(txn, k, v, strlen(v));
		free(k);
		free(v);
	}
	if (l->cursor)
		store_meta_put(txn, "imperai/cursor", l->cursor, strlen(l->cursor));
	return store_txn_error(txn);
}

/* --- request budgets kept across restarts ------------------------------------- */

#define LOOP_BUDGET_POOLS	2

/* Pool i (0: ServiceNow, 1: imper.ai) if it has a budget, with its meta key. */
static struct http_pool *
loop_budget_pool(const struct loop *l, int i, const char **key)
{
	struct http_pool *p = NULL;

	*key = i == 0 ? "budget/servicenow" : "budget/imperai";
	if (i == 0 && l->snow)
		p = snow_client_pool(l->snow);
	else if (i == 1 && l->imp)
		p = imperai_client_pool(l->imp);
	return p && http_pool_budget(p) > 0 ? p : NULL;
}

/* Requests a pool may send past its stored use: what a crash can cost of
 * the hour's budget, and room to send between two commits. */
static int
loop_budget_reserve(const struct loop *l, int i)
{
	const char *key;
	struct http_pool *p = loop_budget_pool(l, i, &key);
	int conc = i == 0 ? l->cfg->snow.http.concurrency : l->cfg->imperai.http.concurrency;
	int r = p ? http_pool_budget(p) / 10 : 0;

	if (l->budget_final)
		return 0;
	r = r < 2 * conc ? r : 2 * conc;
	return r > 1 ? r : 1;
}

static void
loop_budget_clock(struct http_budget_clock *c)
{
	static char id[80];
	static int id_read;
	struct timespec ts;
	FILE *f;

	/* the same boot dates the stored use by the boot clock, exactly */
	if (!id_read && (f = fopen("/proc/sys/kernel/random/boot_id", "r")) != NULL) {
		if (fgets(id, sizeof(id), f) == NULL)
			id[0] = '\0';
		id[strcspn(id, "\n")] = '\0';
		fclose(f);
	}
	id_read = 1;
	clock_gettime(CLOCK_REALTIME, &ts);
	c->wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	c->boot_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	c->boot_id = id[0] ? id : NULL;
}

/* A commit is due once half a pool's reserve is spent (after a failed
 * commit, not before the retry time: no spinning against a full disk). */
static int
loop_budget_due(const struct loop *l)
{
	const char *key;

	if (l->outq_reload_ms != 0)
		return 0;
	for (int i = 0; i < LOOP_BUDGET_POOLS; i++) {
		struct http_pool *p = loop_budget_pool(l, i, &key);

		if (p && (l->budget_final ||
		    http_pool_budget_allowance(p) <= loop_budget_reserve(l, i) / 2))
			return 1;
	}
	return 0;
}

/* Stores each pool's use that changed (it sent, or the reserve changes)
 * with the reserve it may spend once this commits. */
static void
loop_commit_budget(struct store_txn *txn, const struct loop *l)
{
	struct http_budget_clock now;
	int have_now = 0;
	const char *key;
	char *text;

	for (int i = 0; i < LOOP_BUDGET_POOLS; i++) {
		struct http_pool *p = loop_budget_pool(l, i, &key);
		int reserve = loop_budget_reserve(l, i);

		if (p == NULL || (http_pool_budget_allowance(p) == reserve && !l->budget_final))
			continue;
		if (!have_now++)
			loop_budget_clock(&now);
		http_pool_budget_export(p, &now, reserve, &text);
		store_meta_put(txn, key, text, strlen(text));
		free(text);
	}
}

/* Committed: each pool may spend the reserve stored with its use. */
static void
loop_budget_committed(struct loop *l)
{
	const char *key;

	for (int i = 0; i < LOOP_BUDGET_POOLS; i++) {
		struct http_pool *p = loop_budget_pool(l, i, &key);

		if (p)
			http_pool_budget_allow(p, loop_budget_reserve(l, i));
	}
}

/* Counts what the previous run spent; nothing is sent until the first
 * commit stores a reserve.  Unreadable: warned, an empty window. */
static void
loop_budget_load(struct loop *l)
{
	struct http_budget_clock now;
	struct store_txn *txn = NULL;
	const char *key;
	struct buf b;

	buf_init(&b);
	loop_budget_clock(&now);
	if (store_begin(l->st, 1, &txn) < 0)
		txn = NULL;
	for (int i = 0; i < LOOP_BUDGET_POOLS; i++) {
		struct http_pool *p = loop_budget_pool(l, i, &key);
		char *cause = NULL;

		if (p == NULL)
			continue;
		http_pool_budget_allow(p, 0);
		buf_reset(&b);
		if (txn && store_meta_get(txn, key, &b) == 0 &&
		    http_pool_budget_import(p, &now, b.data, &cause) < 0) {
			log_kv(LOG_LVL_WARN, "stored request budget use unreadable: "
			    "counting from an empty hour", "key", key, "error", cause, NULL);
			free(cause);
		}
	}
	if (txn)
		store_abort(txn);
	buf_free(&b);
}

static void loop_load_positions(struct loop *l);

#define LOOP_STORE_NAG_S	600

/* A write to the store failed (disk full, map cannot grow, I/O error).
 * Said once at err with what to do, then every LOOP_STORE_NAG_S: the
 * daemon keeps running and sends nothing for what it could not commit,
 * and resumes by itself once a write succeeds. */
static void
loop_store_failed(struct loop *l, int rc)
{
	const char *cause = store_last_cause(l->st);
	int64_t now = loop_wall();
	char n[24], since[24];

	l->store_failures++;
	snprintf(n, sizeof(n), "%" PRIu64, l->store_failures);
	if (l->store_failing == 0) {
		l->store_failing = l->store_nagged = now;
		log_kv(LOG_LVL_ERR, "cannot write the state store: nothing is sent until it can; "
		    "free space (or fix the cause below) and work resumes by itself",
		    "dir", l->cfg->state_dir, "error", cause ? cause : store_strerror(rc), NULL);
	} else if (now - l->store_nagged >= LOOP_STORE_NAG_S) {
		l->store_nagged = now;
		snprintf(since, sizeof(since), "%" PRId64 "s", now - l->store_failing);
		log_kv(LOG_LVL_WARN, "state store still cannot be written: nothing is sent",
		    "dir", l->cfg->state_dir, "for", since, "failures", n,
		    "error", cause ? cause : store_strerror(rc), NULL);
	} else
		log_kv(LOG_LVL_DEBUG, "state store write failed", "failures", n,
		    "error", cause ? cause : store_strerror(rc), NULL);
}

static void
loop_store_ok(struct loop *l)
{
	char since[24], n[24];

	if (l->store_failing == 0)
		return;
	snprintf(since, sizeof(since), "%" PRId64 "s", loop_wall() - l->store_failing);
	snprintf(n, sizeof(n), "%" PRIu64, l->store_failures);
	log_kv(LOG_LVL_NOTICE, "state store writable again: pending work resumes",
	    "dir", l->cfg->state_dir, "after", since, "failures", n, NULL);
	l->store_failing = 0;
	l->store_failures = 0;
}

static void loop_job_free(struct job *j);

/* Queues r's effects for the next commit (the engine result is consumed). */
static void
loop_keep_result(struct loop *l, struct engine_result *r)
{
	if (r->neffects == 0) {
		engine_result_free(r);
		return;
	}
	l->results = xreallocarray(l->results, l->nresults + 1, sizeof(*l->results));
	l->results[l->nresults++] = *r;
	engine_result_init(r);
}

static void
loop_pending_clear(struct loop *l)
{
	loop_cache_clear(l);
	for (size_t i = 0; i < l->nresults; i++)
		engine_result_free(&l->results[i]);
	free(l->results);
	l->results = NULL;
	l->nresults = 0;
	free(l->done_seqs);
	l->done_seqs = NULL;
	l->ndone = 0;
	for (size_t i = 0; i < l->nupdated; i++)
		loop_job_free(l->updated[i]);
	free(l->updated);
	l->updated = NULL;
	l->nupdated = 0;
	for (size_t i = 0; i < l->naudit; i++)
		free(l->audit[i]);
	free(l->audit);
	l->audit = NULL;
	l->naudit = 0;
	for (size_t i = 0; i < l->nvindex; i++)
		free(l->vindex[i]);
	free(l->vindex);
	l->vindex = NULL;
	l->nvindex = 0;
	l->meta_dirty = 0;
}

static int
loop_has_pending(const struct loop *l)
{
	size_t dirty = 0;

	for (size_t i = 0; i < l->tbl_size && !dirty; i++)
		for (struct lticket *x = l->tbl[i]; x && !dirty; x = x->next)
			dirty = x->dirty;
	return dirty || l->nresults || l->ndone || l->nupdated || l->naudit ||
	    l->nvindex || l->meta_dirty || loop_budget_due(l);
}

static void loop_metrics_committed(struct loop *l);

/* --- metrics: counted here, written by loop_metrics_write() ----------------- */

/* What a decision is compared with, to count what it changed. */
struct mbefore {
	uint32_t			generation;
	enum imperai_status		status;
	enum imperai_action_status	action;
};

static void
loop_metrics_before(const struct ticket *t, struct mbefore *b)
{
	b->generation = t->generation;
	b->status = t->v.status;
	b->action = t->v.action.status;
}

/* New verifications, outcomes and actions a decision made: counted with
 * the step, so a step discarded by a failed commit does not count. */
static void
loop_metrics_after(struct loop *l, const struct mbefore *b, const struct ticket *t)
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

static void
loop_metrics_patched(struct loop *l, const struct effect *e, int resolving, const struct ticket *t)
{
	l->m_step.writes[EFFECT_PATCH]++;
	if (str_eq(e->tag, "link"))
		l->m_step.fields_injected++;
	/* engine_patched() steps back from resolved when ServiceNow did not resolve. */
	if (resolving && (t->state == TS_RESOLVED || t->state == TS_CLOSED))
		l->m_step.auto_resolved++;
}

/* Tickets by state follow every committed change (no scan per interval). */
static void
loop_metrics_committed(struct loop *l)
{
	for (size_t i = 0; i < l->tbl_size && l->m_counted; i++) {
		for (struct lticket *x = l->tbl[i]; x; x = x->next) {
			if (!x->dirty)
				continue;
			if (x->loaded_state >= 0 && l->m_tickets[x->loaded_state] > 0)
				l->m_tickets[x->loaded_state]--;
			if (!x->forget)
				l->m_tickets[x->t.state]++;
			x->loaded_state = x->forget ? -1 : (int)x->t.state;
		}
	}
	metrics_counts_add(&l->m_total, &l->m_step);
	memset(&l->m_step, 0, sizeof(l->m_step));
}

static int
loop_metrics_count_fn(const char *table, const char *sys_id, const void *val, size_t len,
    void *arg)
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
loop_metrics_count(struct loop *l)
{
	struct store_txn *txn;

	memset(l->m_tickets, 0, sizeof(l->m_tickets));
	l->m_counted = 1;
	if (store_begin(l->st, 1, &txn) < 0)
		return;
	if (store_ticket_each(txn, loop_metrics_count_fn, l->m_tickets) < 0)
		log_kv(LOG_LVL_WARN, "cannot count the tickets by state for the metrics", NULL);
	store_abort(txn);
}

static int
loop_metrics_outbox_fn(uint64_t seq, const void *val, size_t len, void *arg)
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
	if (memmem(val, len, parked, sizeof(parked) - 1) != NULL)
		m->outbox_parked++;
	return 0;
}

static void
loop_metrics_service(struct metrics_service *out, const struct metrics_service *base,
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
loop_metrics_gather(struct loop *l, struct metrics *m, struct metrics_table *tabs)
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
	m->nsvc = 2;
	loop_metrics_service(&m->svc[0], &l->m_base[0], l->snow ? snow_client_pool(l->snow) : NULL);
	loop_metrics_service(&m->svc[1], &l->m_base[1], l->imp ? imperai_client_pool(l->imp) : NULL);
	for (size_t i = 0; i < l->npolls; i++)
		if (i == 0 || l->polls[i].last_ok < m->svc[0].last_poll_ok)
			m->svc[0].last_poll_ok = l->polls[i].last_ok;
	m->svc[1].last_poll_ok = l->feed_last_ok;
	if (store_begin(l->st, 1, &txn) == 0) {
		store_outbox_each(txn, loop_metrics_outbox_fn, m);
		store_abort(txn);
	}
}

static void
loop_metrics_write(struct loop *l)
{
	struct metrics_table *tabs = xcalloc(l->npolls ? l->npolls : 1, sizeof(*tabs));
	struct metrics m;
	char *text, *cause = NULL;

	if (!l->m_counted)
		loop_metrics_count(l);
	loop_metrics_gather(l, &m, tabs);
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

/* --- ServiceNow polling ------------------------------------------------------ */

struct pollctx {
	struct loop	*l;
	struct tpoll	*p;
	uint64_t	 epoch;
};

static int
loop_record_seen(struct lticket *lt, const struct snow_record *r)
{
	/* a ticket waiting for a readable requester is read again as it is */
	return lt->existed && lt->t.state != TS_UNTRACKED && r->mod_count <= lt->t.seen_mod_count &&
	    !lt->t.requester_unreadable;
}

static void
loop_observe(struct loop *l, const char *table, const struct snow_record *r)
{
	struct lticket *lt = loop_ticket(l, table, r->sys_id);
	struct engine_result res;

	struct mbefore mb;

	if (loop_record_seen(lt, r))
		return;
	loop_metrics_before(&lt->t, &mb);
	engine_result_init(&res);
	if (engine_observe(&l->pol, &lt->t, table, r, loop_wall(), &res) == 0)
		loop_apply(l, lt, &res);
	loop_metrics_after(l, &mb, &lt->t);
	loop_keep_result(l, &res);
}

/* The sweep's observation: 1 for a ticket needing verification that
 * nothing had seen before. */
static int
loop_sweep_observe(void *arg, const char *table, const struct snow_record *r)
{
	struct loop *l = arg;
	struct lticket *lt = loop_ticket(l, table, r->sys_id);
	int known = lt->existed || lt->t.generation > 0;

	loop_observe(l, table, r);
	return !known && lt->t.generation > 0;
}

static void loop_poll_submit(struct loop *l, struct tpoll *p);

/* Cycles start every interval seconds (not interval after the last one
 * ended, which adds the cycle's own length to the wait for a new ticket);
 * a cycle longer than half the interval is followed by half an interval's
 * rest, so a long backlog is not re-read back to back. */
static int64_t
loop_next_cycle(int64_t started_ms, int interval)
{
	int64_t now = loop_now_ms(), next = started_ms + (int64_t)interval * 1000;

	return next > now + (int64_t)interval * 500 ? next : now + (int64_t)interval * 500;
}

static void
loop_poll_end(struct loop *l, struct tpoll *p)
{
	p->last_ok = loop_wall();
	free(p->last_error);
	p->last_error = NULL;
	p->next_ms = loop_next_cycle(p->started_ms, l->cfg->snow.poll_interval);
	log_kv(LOG_LVL_DEBUG, "poll cycle done", "table", p->table, NULL);
}

/* Whether the cycle reads on after this page, and from where.
 *
 * ServiceNow applies sysparm_limit before row ACLs: a page can come back
 * short, or empty, while more rows follow.  The count (X-Total-Count,
 * hidden rows included) tells which: rows beyond this page's window mean
 * more.  A page with rows moves the cursor past its last one; an empty
 * page cannot, so the next one skips it by offset (three quarters of a
 * page, so a few hidden rows changing meanwhile, which shifts the window,
 * skip nothing).  Without a count only a full page means more.
 *
 * Otherwise a short page ends the cycle: the next starts again from the
 * watermark minus the overlap, which is what catches a record changed in
 * the same second as the cursor but sorting before it (or stamped a
 * little in the past).  An idle cycle is one request. */
static int
loop_poll_more(struct loop *l, struct tpoll *p, const struct snow_list *page)
{
	int limit = l->cfg->snow.page_size > 0 ? l->cfg->snow.page_size : 100;
	int offset = p->offset;
	int more = page->n >= (size_t)limit ||
	    (page->total >= 0 && page->total > (int64_t)offset + limit);

	if (page->n > 0 || !more) {
		p->offset = 0;
		p->hidden_pages = 0;
		return more;
	}
	if (++p->hidden_pages > LOOP_MAX_HIDDEN_PAGES) {
		char n[24];

		snprintf(n, sizeof(n), "%d", offset + limit);
		log_kv(LOG_LVL_WARN, "poll stopped behind rows the integration user may not "
		    "read: give it read access to the table's rows that match the flows, or "
		    "narrow the flows' match", "table", p->table, "hidden_rows", n, NULL);
		p->offset = 0;
		p->hidden_pages = 0;
		return 0;
	}
	p->offset = offset + limit - limit / 4;
	log_kv(LOG_LVL_DEBUG, "poll page hidden by ACLs: reading on past it", "table", p->table,
	    NULL);
	return 1;
}

static void
loop_poll_done(int err, const char *cause, struct snow_list *page, void *arg)
{
	struct pollctx *pc = arg;
	struct loop *l = pc->l;
	struct tpoll *p = pc->p;

	uint64_t epoch = pc->epoch;

	free(pc);
	p->inflight = 0;
	if (epoch != l->epoch) {
		/* A commit failed since: this cycle's position is void.  The
		 * next one starts at the usual interval (at once, it would spin
		 * against a full disk). */
		p->next_ms = loop_now_ms() + l->cfg->snow.poll_interval * 1000;
		return;
	}
	if (err < 0) {
		if (err != -ECANCELED) {
			str_replace(&p->last_error, cause ? cause : strerror(-err));
			log_kv(LOG_LVL_WARN, "ServiceNow poll failed: will retry at the next interval",
			    "table", p->table, "error", cause ? cause : strerror(-err), NULL);
		}
		p->next_ms = loop_now_ms() + l->cfg->snow.poll_interval * 1000;
		return;
	}
	for (size_t i = 0; i < page->n; i++)
		loop_observe(l, p->table, &page->v[i]);
	p->seen += page->n;
	if (page->n > 0) {
		p->cur.updated_on = page->v[page->n - 1].updated_on;
		memcpy(p->cur.sys_id, page->v[page->n - 1].sys_id, sizeof(p->cur.sys_id));
		p->wm = p->cur;
		l->meta_dirty = 1;
	}
	if (loop_poll_more(l, p, page))
		loop_poll_submit(l, p);
	else
		loop_poll_end(l, p);
}

static void
loop_poll_submit(struct loop *l, struct tpoll *p)
{
	struct pollctx *pc = xcalloc(1, sizeof(*pc));

	char *cause = NULL;

	pc->l = l;
	pc->p = p;
	pc->epoch = l->epoch;
	p->inflight = 1;
	if (snow_list_page(l->snow, p->table, NULL, &p->cur, p->offset,
	    (const char *const *)p->fields,
	    p->nfields, loop_poll_done, pc, &cause) < 0) {
		log_kv(LOG_LVL_ERR, "cannot poll table", "table", p->table, "error", cause, NULL);
		free(cause);
		free(pc);
		p->inflight = 0;
		p->next_ms = loop_now_ms() + l->cfg->snow.poll_interval * 1000;
	}
}

/* Starts a poll cycle: from the committed watermark minus the overlap. */
static void
loop_poll_start(struct loop *l, struct tpoll *p)
{
	p->started_ms = loop_now_ms();
	p->offset = 0;
	p->hidden_pages = 0;
	snow_watermark_rewind(&p->wm, l->cfg->snow.poll_overlap, &p->cur);
	loop_poll_submit(l, p);
}

/* --- imper.ai change feed ---------------------------------------------------- */

static int
loop_lookup_verification(struct loop *l, const char *id, char **table, char **sys_id)
{
	struct store_txn *txn;
	struct buf b;
	json_object *o = NULL, *jt, *js;
	int rc;

	buf_init(&b);
	for (size_t i = l->nvindex; i-- > 0;) {
		size_t n = strlen(id);
		if (strncmp(l->vindex[i], id, n) == 0 && l->vindex[i][n] == '\t') {
			buf_adds(&b, l->vindex[i] + n + 1);
			rc = 0;
			goto parse;
		}
	}
	if ((rc = store_begin(l->st, 1, &txn)) < 0)
		return rc;
	rc = store_verification_get(txn, id, &b);
	store_abort(txn);
parse:
	if (rc == 0) {
		o = json_tokener_parse(b.data);
		if (o && json_object_object_get_ex(o, "table", &jt) &&
		    json_object_object_get_ex(o, "sys_id", &js)) {
			*table = xstrdup(json_object_get_string(jt));
			*sys_id = xstrdup(json_object_get_string(js));
		} else
			rc = -EBADMSG;
		json_object_put(o);
	}
	buf_free(&b);
	return rc;
}

/* Every request we created is indexed, stale generations included: their
 * feed items then reach the engine (which ignores them) instead of
 * looking like requests nobody made. */
static void
loop_index_verification(struct loop *l, const char *id, const struct ticket *t,
    uint32_t generation)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "table", json_object_new_string(t->table));
	json_object_object_add(o, "sys_id", json_object_new_string(t->sys_id));
	json_object_object_add(o, "number", json_object_new_string(t->number ? t->number : ""));
	json_object_object_add(o, "generation", json_object_new_int64(generation));
	l->vindex = xreallocarray(l->vindex, l->nvindex + 1, sizeof(*l->vindex));
	l->vindex[l->nvindex++] = xprintf("%s\t%s", id,
	    json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
}

/* The feed can name a request before our create's answer is committed (a
 * race, harmless: the create answer carries the same state); anything
 * else is a request this daemon never made. */
static void
loop_unknown_verification(struct loop *l, const struct imperai_verification *v)
{
	struct lticket *lt = NULL;

	if (v->ticket.table && v->ticket.sys_id && config_table(l->cfg, v->ticket.table) &&
	    strlen(v->ticket.sys_id) == 32)
		lt = loop_ticket(l, v->ticket.table, v->ticket.sys_id);
	/* Awaiting the answer -- or no longer, but the create is still in the
	 * outbox: the ticket left the flows, ended or changed requester while
	 * imper.ai held the answer; the answer will be indexed and canceled. */
	if (lt && lt->existed && (lt->t.state == TS_AWAITING_REQUEST ||
	    outq_has(l->oq, lt->key))) {
		log_kv(LOG_LVL_DEBUG, "feed ahead of the create answer: item skipped",
		    "verification", v->id, "ticket", lt->t.number, NULL);
		return;
	}
	log_kv(LOG_LVL_WARN, "security: verification for a request this daemon did not make ignored",
	    "verification", v->id, "ticket", v->ticket.number, NULL);
	loop_audit(l, "security", "verification for an unknown request ignored", v->id);
}

static void
loop_verification(struct loop *l, const struct imperai_verification *v)
{
	char *table = NULL, *sys_id = NULL;
	struct lticket *lt;
	struct engine_result res;
	struct mbefore mb;
	int rc;

	rc = loop_lookup_verification(l, v->id, &table, &sys_id);
	if (rc < 0) {
		loop_unknown_verification(l, v);
		return;
	}
	lt = loop_ticket(l, table, sys_id);
	loop_metrics_before(&lt->t, &mb);
	engine_result_init(&res);
	if (engine_verification(&l->pol, &lt->t, v, loop_wall(), &res) == 0)
		loop_apply(l, lt, &res);
	loop_metrics_after(l, &mb, &lt->t);
	loop_keep_result(l, &res);
	free(table);
	free(sys_id);
}

static void loop_feed_submit(struct loop *l);

static void
loop_feed_done(int err, const char *cause, struct imperai_feed *f, void *arg)
{
	struct loop *l = arg;

	l->feed_inflight = 0;
	if (l->feed_epoch != l->epoch) {
		l->feed_next_ms = loop_now_ms() + l->cfg->imperai.poll_interval * 1000;
		return;
	}
	if (err < 0) {
		if (err != -ECANCELED) {
			str_replace(&l->feed_last_error, cause ? cause : strerror(-err));
			log_kv(LOG_LVL_WARN, "imper.ai change feed failed: will retry at the next interval",
			    "error", cause ? cause : strerror(-err), NULL);
		}
		l->feed_next_ms = loop_now_ms() + l->cfg->imperai.poll_interval * 1000;
		return;
	}
	for (size_t i = 0; i < f->n; i++)
		loop_verification(l, &f->v[i]);
	if (f->next_cursor && !str_eq(f->next_cursor, l->cursor)) {
		str_replace(&l->cursor, f->next_cursor);
		l->meta_dirty = 1;
	}
	l->feed_last_ok = loop_wall();
	free(l->feed_last_error);
	l->feed_last_error = NULL;
	if (f->has_more && f->n > 0) {
		loop_feed_submit(l);
		return;
	}
	l->feed_next_ms = loop_next_cycle(l->feed_started_ms, l->cfg->imperai.poll_interval);
}

static void
loop_feed_submit(struct loop *l)
{
	l->feed_inflight = 1;
	l->feed_epoch = l->epoch;
	imperai_changes(l->imp, l->cursor, l->cfg->imperai.feed_limit, loop_feed_done, l);
}

/* --- the outbox -------------------------------------------------------------- */

static enum outq_lane
loop_lane(enum effect_kind k)
{
	return k == EFFECT_PATCH ? OUTQ_SNOW : OUTQ_IMPERAI;
}

static void
loop_job_free(struct job *j)
{
	effect_free(&j->e);
	free(j->gone);
	free(j->revs);
	free(j);
}

static void
loop_job_end(struct job *j, int done)
{
	struct loop *l = j->l;
	char *key = loop_key(j->e.table, j->e.sys_id);

	if (j->e.kind == EFFECT_PATCH)
		l->snow_jobs--;
	else
		l->imp_jobs--;
	if (done) {
		outq_done(l->oq, key, j->seq);
		l->done_seqs = xreallocarray(l->done_seqs, l->ndone + 1, sizeof(*l->done_seqs));
		l->done_seqs[l->ndone++] = j->seq;
		l->stat_effects_done++;
	} else
		outq_release(l->oq, key, j->seq, j->e.not_before);
	free(key);
	l->outbox_dirty = 1;
	loop_job_free(j);
}

/* A transient failure: try again later, with backoff; park after too many. */
static void
loop_job_again(struct job *j, const char *why)
{
	struct loop *l = j->l;
	struct job *copy = xcalloc(1, sizeof(*copy));
	char *enc;
	int64_t delay;

	str_replace(&j->e.last_error, why);
	if (j->e.attempts >= LOOP_MAX_ATTEMPTS) {
		j->e.not_before = LOOP_PARKED;
		log_kv(LOG_LVL_ERR, "write parked after repeated failures: it is retried on its "
		    "own every servicenow.parked_retry, or at once with imperai-snowctl retry once "
		    "the cause is fixed", "ticket", j->e.number, "effect",
		    engine_effect_name(j->e.kind), "error", why, NULL);
	} else {
		delay = http_backoff_ms(j->e.attempts, 1000, 300000, (double)rand() / RAND_MAX);
		j->e.not_before = loop_wall() + (delay + 999) / 1000;
		char att[16];
		snprintf(att, sizeof(att), "%d", j->e.attempts);
		log_kv(LOG_LVL_WARN, "write failed: will retry", "ticket", j->e.number, "effect",
		    engine_effect_name(j->e.kind), "attempt", att, "error", why, NULL);
	}
	/* The rewritten entry is committed with the step. */
	copy->l = l;
	copy->seq = j->seq;
	enc = codec_effect_encode(&j->e);
	codec_effect_decode(enc, strlen(enc), &copy->e, NULL);
	free(enc);
	l->updated = xreallocarray(l->updated, l->nupdated + 1, sizeof(*l->updated));
	l->updated[l->nupdated++] = copy;
	l->stat_effects_failed++;
	l->m_write_failures[j->e.kind]++;
	loop_job_end(j, 0);
}

static void
loop_job_retry(struct job *j, const char *why)
{
	loop_job_again(j, why);
}

/* A permanent failure: the engine decides what the ticket shows. */
static void
loop_job_failed(struct job *j, const char *why)
{
	struct loop *l = j->l;
	struct lticket *lt = loop_ticket(l, j->e.table, j->e.sys_id);
	struct engine_result res;

	log_kv(LOG_LVL_ERR, "write refused", "ticket", j->e.number, "effect",
	    engine_effect_name(j->e.kind), "error", why, NULL);
	l->m_write_failures[j->e.kind]++;
	engine_result_init(&res);
	if (engine_effect_failed(&l->pol, &lt->t, &j->e, why, loop_wall(), &res) == 0)
		loop_apply(l, lt, &res);
	loop_keep_result(l, &res);
	loop_job_end(j, 1);
}

static void
loop_create_done(int err, long status, const char *cause, struct imperai_verification *v,
    void *arg)
{
	struct job *j = arg;
	struct loop *l = j->l;
	struct lticket *lt;
	struct engine_result res;
	struct mbefore mb;

	if (err == -ECANCELED) {
		loop_job_end(j, 0);
		return;
	}
	if (err < 0) {
		if (status >= 400 && status < 500 && status != 401 && status != 429)
			loop_job_failed(j, cause ? cause : strerror(-err));
		else
			loop_job_retry(j, cause ? cause : strerror(-err));
		return;
	}
	lt = loop_ticket(l, j->e.table, j->e.sys_id);
	loop_metrics_before(&lt->t, &mb);
	engine_result_init(&res);
	if (engine_created(&l->pol, &lt->t, j->e.generation, v, loop_wall(), &res) == 0) {
		loop_index_verification(l, v->id, &lt->t, j->e.generation);
		loop_apply(l, lt, &res);
	}
	loop_metrics_after(l, &mb, &lt->t);
	l->m_step.writes[EFFECT_CREATE]++;
	loop_keep_result(l, &res);
	log_kv(LOG_LVL_INFO, "verification requested", "ticket", j->e.number,
	    "verification", v->id, NULL);
	loop_job_end(j, 1);
}

static void
loop_cancel_done(int err, long status, const char *cause, struct imperai_verification *v,
    void *arg)
{
	struct job *j = arg;

	if (err == -ECANCELED) {
		loop_job_end(j, 0);
		return;
	}
	/* Already final: the answer says how it ended, which the ticket shows
	 * (the feed would say so too, later). */
	if (status == 409 && v != NULL && v->id != NULL)
		loop_verification(j->l, v);
	/* Gone or already final: nothing left to cancel. */
	if (err < 0 && status != 404 && status != 409) {
		if (status >= 400 && status < 500 && status != 401 && status != 429)
			loop_job_failed(j, cause ? cause : strerror(-err));
		else
			loop_job_retry(j, cause ? cause : strerror(-err));
		return;
	}
	log_kv(LOG_LVL_INFO, "verification canceled", "ticket", j->e.number,
	    "verification", j->e.request_id, NULL);
	j->l->m_step.writes[EFFECT_CANCEL]++;
	loop_job_end(j, 1);
}

static const char *const *loop_patch_fields(struct loop *l, const char *table, size_t *n);

static void
loop_patched(struct job *j, struct snow_record *rec)
{
	struct loop *l = j->l;
	struct lticket *lt = loop_ticket(l, j->e.table, j->e.sys_id);
	struct engine_result res;
	struct mbefore mb;
	int resolving = j->e.revision != 0 && j->e.revision == lt->t.resolve_revision;

	loop_metrics_before(&lt->t, &mb);
	engine_result_init(&res);
	/* a merged PATCH landed every revision it carries, in order */
	for (size_t i = 0; i < j->ngone; i++)
		if (engine_patched(&l->pol, &lt->t, j->revs[i], rec, loop_wall(), &res) == 0)
			loop_apply(l, lt, &res);
	if (engine_patched(&l->pol, &lt->t, j->e.revision, rec, loop_wall(), &res) == 0)
		loop_apply(l, lt, &res);
	loop_metrics_after(l, &mb, &lt->t);
	loop_metrics_patched(l, &j->e, resolving, &lt->t);
	loop_keep_result(l, &res);
	log_kv(LOG_LVL_INFO, "ticket updated", "ticket", j->e.number, "event", j->e.tag, NULL);
	loop_audit(l, "write", j->e.tag ? j->e.tag : "patch", j->e.number);
	loop_job_end(j, 1);
}

static void
loop_patch_done(int err, long status, const char *cause, struct snow_record *rec, void *arg)
{
	struct job *j = arg;

	if (err == -ECANCELED) {
		loop_job_end(j, 0);
		return;
	}
	if (err == -ENOENT) {
		log_kv(LOG_LVL_WARN, "ticket no longer exists or is hidden by an ACL: write dropped",
		    "ticket", j->e.number, NULL);
		loop_job_end(j, 1);
		return;
	}
	if (err < 0) {
		/* only ServiceNow's own JSON error on the write itself is final */
		if (err != -EAGAIN && status >= 400 && status < 500 && status != 401 &&
		    status != 429) {
			loop_job_failed(j, cause ? cause : strerror(-err));
			return;
		}
		/* Rate-limited or not authenticated: ServiceNow refused it before
		 * doing anything, so this attempt cannot have landed and needs no
		 * read-back (an earlier attempt that may have still gets one). */
		if ((status == 429 || status == 401) && j->e.attempts > 0)
			j->e.attempts--;
		loop_job_retry(j, cause ? cause : strerror(-err));
		return;
	}
	loop_patched(j, rec);
}

static void loop_patch_send(struct job *j);

static int
loop_patch_resolves(const struct effect *e)
{
	return e->kind == EFFECT_PATCH && str_eq(e->tag, "resolved");
}

/* A resolving PATCH the engine withdrew since (the ticket changed first). */
static int
loop_patch_withdrawn(struct loop *l, const struct job *j)
{
	struct lticket *lt;

	if (!loop_patch_resolves(&j->e))
		return 0;
	lt = loop_ticket(l, j->e.table, j->e.sys_id);
	return lt->t.resolve_revision != j->e.revision;
}

static void
loop_patch_drop(struct job *j)
{
	log_kv(LOG_LVL_NOTICE, "resolve not written: the ticket changed before it was sent",
	    "ticket", j->e.number, NULL);
	loop_job_end(j, 1);
}

/* Read-back before replaying a PATCH that may have landed, and before
 * resolving: a change made since the resolve was decided is decided first. */
static void
loop_check_done(int err, long status, const char *cause, struct snow_record *rec, void *arg)
{
	struct job *j = arg;
	struct loop *l = j->l;
	const struct config_table *ct;
	const char *field;

	if (err == -ECANCELED) {
		loop_job_end(j, 0);
		return;
	}
	if (err == -ENOENT) {
		loop_job_end(j, 1);
		return;
	}
	/* A read-back is a GET: whatever answered (a proxy's HTML page, an
	 * ACL's 403 until an admin fixes it), asking again later is safe, so it
	 * is retried with backoff; whether the write landed stays unknown, so
	 * it is neither dropped nor sent blind. */
	if (err < 0) {
		(void)status;
		loop_job_retry(j, cause ? cause : strerror(-err));
		return;
	}
	ct = config_table(l->cfg, j->e.table);
	field = ct ? snow_record_get(rec, ct->field) : NULL;
	if (field && engine_field_has_revision(field, j->e.generation, j->e.revision)) {
		log_kv(LOG_LVL_INFO, "write had landed before the answer was lost: not repeated",
		    "ticket", j->e.number, "event", j->e.tag, NULL);
		/* rec is the ticket as it is now, not our PATCH's answer: what
		 * others changed since (an agent closing it, a new caller) is
		 * decided as an observed change first, or it would pass for our
		 * own write and the next poll would skip it as seen. */
		loop_observe(l, j->e.table, rec);
		loop_patched(j, rec);
		return;
	}
	if (loop_patch_resolves(&j->e)) {
		loop_observe(l, j->e.table, rec);
		if (loop_patch_withdrawn(l, j)) {
			loop_patch_drop(j);
			return;
		}
	}
	loop_patch_send(j);
}

static void
loop_patch_send(struct job *j)
{
	struct loop *l = j->l;
	size_t n;
	const char *const *fields = loop_patch_fields(l, j->e.table, &n);

	char *cause = NULL;

	if (snow_patch(l->snow, j->e.table, j->e.sys_id, j->e.patch_json, fields, n,
	    loop_patch_done, j, &cause) < 0) {
		loop_job_failed(j, cause ? cause : "request refused");
		free(cause);
	}
}

static void
loop_job_start(struct loop *l, struct job *j)
{
	size_t n;
	const char *const *fields;

	switch (j->e.kind) {
	case EFFECT_CREATE:
		l->imp_jobs++;
		imperai_create(l->imp, &j->e.create, loop_create_done, j);
		break;
	case EFFECT_CANCEL:
		l->imp_jobs++;
		imperai_cancel(l->imp, j->e.request_id, loop_cancel_done, j);
		break;
	case EFFECT_PATCH:
		l->snow_jobs++;
		if (loop_patch_withdrawn(l, j))
			loop_patch_drop(j);
		else if (j->checking) {
			char *cause = NULL;

			fields = loop_patch_fields(l, j->e.table, &n);
			if (snow_get(l->snow, j->e.table, j->e.sys_id, fields, n, loop_check_done,
			    j, &cause) < 0) {
				loop_job_failed(j, cause ? cause : "request refused");
				free(cause);
			}
		} else
			loop_patch_send(j);
		break;
	}
}

/* --- commit and start -------------------------------------------------------- */

static void loop_load_positions(struct loop *l);

/* One step's write transaction: its decisions, the outbox entries they
 * cause, and the marks of the PATCHes about to be sent (crash rule: an
 * entry is committed, a PATCH as attempted, before its request goes out). */
struct commit_ctx {
	struct loop		 *l;
	struct job		**picked;	/* stored entries to start */
	size_t			  npicked;
	int			  marks;	/* PATCHes among them: a write is needed */
	struct job		**fresh;	/* per new effect: started at once, or NULL */
	uint64_t		 *seqs;		/* per new effect: its outbox seq */
	size_t			  nnew;
};

/* The effect behind new entry idx (moved into its job when started). */
static struct effect *
loop_new_effect(struct commit_ctx *cc, size_t i, size_t k, size_t idx)
{
	return cc->fresh[idx] ? &cc->fresh[idx]->e : &cc->l->results[i].effects[k];
}

static void
loop_commit_outbox(struct store_txn *txn, struct commit_ctx *cc)
{
	struct loop *l = cc->l;
	size_t idx = 0;

	for (size_t i = 0; i < l->nresults; i++) {
		for (size_t k = 0; k < l->results[i].neffects; k++, idx++) {
			char *enc = codec_effect_encode(loop_new_effect(cc, i, k, idx));

			store_outbox_add(txn, enc, strlen(enc), &cc->seqs[idx]);
			free(enc);
		}
	}
	for (size_t i = 0; i < l->ndone; i++)
		store_outbox_del(txn, l->done_seqs[i]);
	for (size_t i = 0; i < l->nupdated; i++) {
		char *enc = codec_effect_encode(&l->updated[i]->e);
		store_outbox_put(txn, l->updated[i]->seq, enc, strlen(enc));
		free(enc);
	}
	for (size_t i = 0; i < cc->npicked; i++) {
		struct job *j = cc->picked[i];
		char *enc;

		if (j->e.kind != EFFECT_PATCH)
			continue;
		enc = codec_effect_encode(&j->e);
		store_outbox_put(txn, j->seq, enc, strlen(enc));
		free(enc);
		for (size_t k = 0; k < j->ngone; k++)
			store_outbox_del(txn, j->gone[k]);
	}
}

/* Writes only (store_write may run it twice): what to start is decided before. */
static int
loop_commit_fn(struct store_txn *txn, void *arg)
{
	struct commit_ctx *cc = arg;
	struct loop *l = cc->l;
	uint64_t seq;

	loop_commit_outbox(txn, cc);
	for (size_t i = 0; i < l->nvindex; i++) {
		char *tab = strchr(l->vindex[i], '\t');
		*tab = '\0';
		store_verification_put(txn, l->vindex[i], tab + 1, strlen(tab + 1));
		*tab = '\t';
	}
	loop_commit_tickets(txn, l);
	if (l->meta_dirty)
		loop_commit_meta(txn, l);
	loop_commit_budget(txn, l);
	for (size_t i = 0; i < l->naudit; i++)
		store_audit_append(txn, loop_wall(), l->audit[i], &seq);
	return store_txn_error(txn);
}

static void
loop_picked_add(struct commit_ctx *cc, struct job *j)
{
	cc->picked = xreallocarray(cc->picked, cc->npicked + 1, sizeof(*cc->picked));
	cc->picked[cc->npicked++] = j;
}

/* Reads a picked entry; an unreadable one is skipped (left in the store). */
static int
loop_pick_read(struct loop *l, struct store_txn *txn, struct job *j, const char *key,
    struct buf *b)
{
	char *cause = NULL;
	int rc;

	/* A rewrite this step has not committed yet is the entry's truth
	 * (a 429 undoes its attempt's count: no read-back is due). */
	for (size_t i = l->nupdated; i-- > 0;) {
		if (l->updated[i]->seq == j->seq) {
			char *enc = codec_effect_encode(&l->updated[i]->e);

			rc = codec_effect_decode(enc, strlen(enc), &j->e, &cause);
			free(enc);
			if (rc == 0)
				return 0;
			break;
		}
	}
	if ((rc = store_outbox_get(txn, j->seq, b)) == 0 &&
	    (rc = codec_effect_decode(b->data, b->len, &j->e, &cause)) == 0)
		return 0;
	log_kv(LOG_LVL_ERR, "outbox entry unreadable: skipped", "ticket", key,
	    "error", cause ? cause : store_strerror(rc), NULL);
	free(cause);
	return rc;
}

/* {"f": html, "work_notes": a} then {"f": html2, "work_notes": b} as one
 * PATCH: the later value of each field, both notes in one entry (each
 * keeps its tag).  NULL if either is not a JSON object. */
static char *
loop_patch_merge(const char *first, const char *later)
{
	json_object *a = json_tokener_parse(first), *b = json_tokener_parse(later), *note;
	char *out = NULL;

	if (!json_object_is_type(a, json_type_object) || !json_object_is_type(b, json_type_object))
		goto out;
	json_object_object_foreach(b, k, v) {
		if (strcmp(k, "work_notes") == 0 && json_object_object_get_ex(a, k, &note) &&
		    json_object_is_type(note, json_type_string) &&
		    json_object_is_type(v, json_type_string)) {
			char *both = xprintf("%s\n\n%s", json_object_get_string(note),
			    json_object_get_string(v));

			json_object_object_add(a, k, json_object_new_string(both));
			free(both);
		} else
			json_object_object_add(a, k, json_object_get(v));
	}
	out = xstrdup(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN));
out:
	json_object_put(a);
	json_object_put(b);
	return out;
}

/* Folds the PATCHes queued right behind j (same ticket and generation,
 * due, never sent, not a resolve) into j: one request instead of several.  j itself was
 * never sent either, so nothing it carries can have landed; its read-back
 * after a crash looks for the last revision, which covers the others. */
static void
loop_pick_merge(struct loop *l, struct store_txn *txn, struct job *j, const char *key,
    struct buf *b, int64_t now)
{
	uint64_t next = j->seq;
	struct effect e;
	char *merged;

	while ((next = outq_next_same(l->oq, key, next, now)) != 0) {
		if (store_outbox_get(txn, next, b) != 0 ||
		    codec_effect_decode(b->data, b->len, &e, NULL) != 0)
			return;
		/* a resolve goes alone: it is read back first, and may be withdrawn */
		merged = e.kind == EFFECT_PATCH && !loop_patch_resolves(&e) &&
		    e.generation == j->e.generation && e.attempts == 0 ?
		    loop_patch_merge(j->e.patch_json, e.patch_json) : NULL;
		if (merged == NULL) {
			effect_free(&e);
			return;
		}
		j->gone = xreallocarray(j->gone, j->ngone + 1, sizeof(*j->gone));
		j->revs = xreallocarray(j->revs, j->ngone + 1, sizeof(*j->revs));
		j->gone[j->ngone] = next;
		j->revs[j->ngone++] = j->e.revision;
		free(j->e.patch_json);
		j->e.patch_json = merged;
		j->e.revision = e.revision;
		str_replace(&j->e.tag, e.tag);
		effect_free(&e);
	}
}

/* A PATCH sent before without an answer is read back only once it can no
 * longer land: a request still queued at ServiceNow when the daemon died
 * (or its answer was lost) may be applied after a read-back made too
 * soon, and the replay would then write it twice.  Puts such an entry
 * back until write_settle seconds after its last attempt (at most that
 * long from now, should the clock have gone back). */
static int
loop_pick_unsettled(struct loop *l, struct job *j, const char *key, int64_t now)
{
	int64_t settle = l->cfg->snow.write_settle, due = j->e.sent_at + settle;

	if (j->e.kind != EFFECT_PATCH || j->e.attempts == 0 || due <= now)
		return 0;
	if (due > now + settle)
		due = now + settle;
	log_kv(LOG_LVL_DEBUG, "write unanswered: read back once it can no longer land",
	    "ticket", j->e.number, "event", j->e.tag, NULL);
	outq_release(l->oq, key, j->seq, due);
	loop_job_free(j);
	return 1;
}

/* Takes the due stored entries the lanes have room for, oldest first. */
static void
loop_pick(struct loop *l, struct commit_ctx *cc, int room[OUTQ__LANES])
{
	int64_t now = loop_wall();
	struct store_txn *txn = NULL;
	struct buf b;
	uint64_t seq;
	const char *key;

	buf_init(&b);
	for (int lane = 0; lane < OUTQ__LANES; lane++) {
		while (room[lane] > 0 && outq_take(l->oq, (enum outq_lane)lane, now, &seq, &key) == 0) {
			struct job *j = xcalloc(1, sizeof(*j));

			j->l = l;
			j->seq = seq;
			if ((txn == NULL && store_begin(l->st, 1, &txn) < 0) ||
			    loop_pick_read(l, txn, j, key, &b) < 0) {
				outq_done(l->oq, key, seq);
				free(j);
				continue;
			}
			if (loop_pick_unsettled(l, j, key, now))
				continue;
			j->checking = j->e.kind == EFFECT_PATCH &&
			    (j->e.attempts > 0 || loop_patch_resolves(&j->e));
			if (j->e.kind == EFFECT_PATCH && !j->checking)
				loop_pick_merge(l, txn, j, key, &b, now);
			j->e.attempts++;
			j->e.sent_at = now;
			cc->marks |= j->e.kind == EFFECT_PATCH;
			loop_picked_add(cc, j);
			room[lane]--;
		}
	}
	if (txn != NULL)
		store_abort(txn);
	buf_free(&b);
}

/* A new effect starts in the same transaction that stores it when its
 * lane has room and its ticket has nothing before it in the outbox. */
static void
loop_pick_fresh(struct loop *l, struct commit_ctx *cc, int room[OUTQ__LANES])
{
	int64_t now = loop_wall();
	size_t idx = 0;

	for (size_t i = 0; i < l->nresults; i++)
		cc->nnew += l->results[i].neffects;
	cc->fresh = xcalloc(cc->nnew ? cc->nnew : 1, sizeof(*cc->fresh));
	cc->seqs = xcalloc(cc->nnew ? cc->nnew : 1, sizeof(*cc->seqs));
	for (size_t i = 0; i < l->nresults; i++) {
		for (size_t k = 0; k < l->results[i].neffects; k++, idx++) {
			struct effect *e = &l->results[i].effects[k];
			char *key = loop_key(e->table, e->sys_id);
			struct lticket *lt = loop_cache_find(l, key);
			enum outq_lane lane = loop_lane(e->kind);
			int first = lt != NULL && lt->new_effects++ == 0;

			if (first && room[lane] > 0 && e->not_before <= now && !outq_has(l->oq, key)) {
				struct job *j = xcalloc(1, sizeof(*j));

				j->l = l;
				j->e = *e;
				memset(e, 0, sizeof(*e));
				j->checking = loop_patch_resolves(&j->e);
				j->e.attempts++;
				j->e.sent_at = now;
				cc->fresh[idx] = j;
				room[lane]--;
			}
			free(key);
		}
	}
}

/* After the commit: the new entries join the index, the picked ones start. */
static void
loop_commit_done(struct loop *l, struct commit_ctx *cc)
{
	size_t idx = 0;

	for (size_t i = 0; i < l->nresults; i++) {
		for (size_t k = 0; k < l->results[i].neffects; k++, idx++) {
			struct effect *e = loop_new_effect(cc, i, k, idx);
			char *key = loop_key(e->table, e->sys_id);

			outq_add(l->oq, key, cc->seqs[idx], loop_lane(e->kind), e->not_before,
			    cc->fresh[idx] != NULL);
			if (cc->fresh[idx] != NULL)
				cc->fresh[idx]->seq = cc->seqs[idx];
			free(key);
		}
	}
	loop_pending_clear(l);
	for (size_t i = 0; i < cc->npicked; i++) {
		struct job *j = cc->picked[i];

		if (j->ngone > 0) {
			char *key = loop_key(j->e.table, j->e.sys_id);

			for (size_t k = 0; k < j->ngone; k++)
				outq_done(l->oq, key, j->gone[k]);
			free(key);
		}
		loop_job_start(l, j);
	}
	for (size_t i = 0; i < cc->nnew; i++)
		if (cc->fresh[i] != NULL)
			loop_job_start(l, cc->fresh[i]);
}

static int
loop_outq_scan(uint64_t seq, const void *val, size_t len, void *arg)
{
	struct outq *q = arg;
	struct effect e;
	char *key, *cause = NULL;

	if (codec_effect_decode(val, len, &e, &cause) < 0) {
		log_kv(LOG_LVL_ERR, "outbox entry unreadable: skipped", "error", cause, NULL);
		free(cause);
		return 0;
	}
	key = loop_key(e.table, e.sys_id);
	outq_add(q, key, seq, loop_lane(e.kind), e.not_before, 0);
	free(key);
	effect_free(&e);
	return 0;
}

/* (Re)builds the index from the stored outbox; entries in flight stay so. */
static void
loop_outq_load(struct loop *l)
{
	struct outq *q = outq_new();
	struct store_txn *txn;
	uint64_t *run = NULL;
	char **keys = NULL;
	size_t n = 0;

	if (l->oq != NULL)
		run = outq_running(l->oq, &keys, &n);
	if (store_begin(l->st, 1, &txn) == 0) {
		store_outbox_each(txn, loop_outq_scan, q);
		store_abort(txn);
	}
	for (size_t i = 0; i < n; i++) {
		outq_mark_running(q, keys[i], run[i]);
		free(keys[i]);
	}
	free(keys);
	free(run);
	outq_free(l->oq);
	l->oq = q;
	l->outbox_dirty = 1;
}

static void
loop_commit_ctx_free(struct commit_ctx *cc, int jobs)
{
	for (size_t i = 0; jobs && i < cc->npicked; i++) {
		char *key = loop_key(cc->picked[i]->e.table, cc->picked[i]->e.sys_id);

		outq_release(cc->l->oq, key, cc->picked[i]->seq, cc->picked[i]->e.not_before);
		free(key);
		loop_job_free(cc->picked[i]);
	}
	for (size_t i = 0; jobs && i < cc->nnew; i++)
		if (cc->fresh[i] != NULL)
			loop_job_free(cc->fresh[i]);
	free(cc->picked);
	free(cc->fresh);
	free(cc->seqs);
}

/* Commits everything this step decided and, with start, starts what the
 * outbox has room for, in one write transaction (none when there is
 * nothing to write). */
static int
loop_commit(struct loop *l, int start)
{
	struct commit_ctx cc = { .l = l };
	int room[OUTQ__LANES] = { 0, 0 };
	int rc;

	/* what a failed commit did not delete runs again, as a replay */
	if (l->outq_reload_ms != 0 && loop_now_ms() >= l->outq_reload_ms) {
		l->outq_reload_ms = 0;
		loop_outq_load(l);
	}
	/* After a failed commit nothing starts until the outbox is reloaded:
	 * marking writes against a full disk would only fail again, at once. */
	if (l->outq_reload_ms != 0)
		start = 0;
	if (start && l->snow != NULL && l->imp != NULL) {
		room[OUTQ_SNOW] = l->cfg->snow.http.concurrency * 2 - l->snow_jobs;
		room[OUTQ_IMPERAI] = l->cfg->imperai.http.concurrency * 2 - l->imp_jobs;
	}
	l->outbox_dirty = 0;
	loop_pick(l, &cc, room);
	loop_pick_fresh(l, &cc, room);
	if (!loop_has_pending(l) && !cc.marks) {
		loop_metrics_committed(l);
		loop_commit_done(l, &cc);
		loop_commit_ctx_free(&cc, 0);
		return 0;
	}
	rc = store_write(l->st, loop_commit_fn, &cc);
	if (rc < 0) {
		loop_store_failed(l, rc);
		/* Forget this step's decisions and go back to the committed
		 * positions: the inputs are seen again by the next polls. */
		memset(&l->m_step, 0, sizeof(l->m_step));
		loop_commit_ctx_free(&cc, 1);
		loop_pending_clear(l);
		l->outq_reload_ms = loop_now_ms() + 1000;
		l->epoch++;
		loop_load_positions(l);
		return rc;
	}
	loop_budget_committed(l);
	loop_metrics_committed(l);
	loop_commit_done(l, &cc);
	loop_commit_ctx_free(&cc, 0);
	loop_store_ok(l);
	return 0;
}

/* --- fields asked for ------------------------------------------------------- */

static void
loop_add_field(char ***v, size_t *n, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*v)[i], name) == 0)
			return;
	*v = xreallocarray(*v, *n + 1, sizeof(**v));
	(*v)[(*n)++] = xstrdup(name);
}

/* Only the fields the engine and the policy look at. */
static void
loop_poll_fields(struct loop *l, struct tpoll *p)
{
	const struct config_table *ct = config_table(l->cfg, p->table);
	static const char *base[] = { "sys_id", "number", "sys_mod_count", "sys_updated_on",
	    "state", "active", "category", "subcategory", "short_description", "description",
	    "assigned_to.name" };
	char **extra = NULL;
	size_t nextra = 0;

	for (size_t i = 0; i < ARRAY_SIZE(base); i++)
		loop_add_field(&p->fields, &p->nfields, base[i]);
	if (ct) {
		char *s;
		loop_add_field(&p->fields, &p->nfields, ct->field);
		loop_add_field(&p->fields, &p->nfields, ct->requester_field);
		s = xprintf("%s.name", ct->requester_field);
		loop_add_field(&p->fields, &p->nfields, s);
		free(s);
		s = xprintf("%s.email", ct->requester_field);
		loop_add_field(&p->fields, &p->nfields, s);
		free(s);
		s = xprintf("%s.user_name", ct->requester_field);
		loop_add_field(&p->fields, &p->nfields, s);
		free(s);
	}
	flows_fields(l->flows, p->table, &extra, &nextra);
	for (size_t i = 0; i < nextra; i++) {
		loop_add_field(&p->fields, &p->nfields, extra[i]);
		free(extra[i]);
	}
	free(extra);
}

static const char *const *
loop_patch_fields(struct loop *l, const char *table, size_t *n)
{
	for (size_t i = 0; i < l->npolls; i++) {
		if (strcmp(l->polls[i].table, table) == 0) {
			*n = l->polls[i].nfields;
			return (const char *const *)l->polls[i].fields;
		}
	}
	*n = 0;
	return NULL;
}

/* --- operator requests (imperai-snowctl resync / retry) ---------------------- */

struct resync {
	struct loop	*l;
	char		*table;
	char		*number;
};

static void
loop_resync_done(int err, long status, const char *cause, struct snow_record *rec, void *arg)
{
	struct resync *rs = arg;
	struct loop *l = rs->l;
	struct lticket *lt;
	struct engine_result res;
	struct mbefore mb;

	(void)status;
	if (err < 0) {
		if (err != -ECANCELED)
			log_kv(LOG_LVL_WARN, "resync failed", "ticket", rs->number, "error", cause, NULL);
		goto out;
	}
	lt = loop_ticket(l, rs->table, rec->sys_id);
	/* A resync looks again even at a record already seen. */
	lt->t.seen_mod_count = -1;
	loop_metrics_before(&lt->t, &mb);
	engine_result_init(&res);
	if (engine_observe(&l->pol, &lt->t, rs->table, rec, loop_wall(), &res) == 0) {
		lt->dirty = 1;
		loop_apply(l, lt, &res);
	}
	loop_metrics_after(l, &mb, &lt->t);
	loop_keep_result(l, &res);
	log_kv(LOG_LVL_NOTICE, "resync done", "ticket", rs->number, NULL);
out:
	free(rs->table);
	free(rs->number);
	free(rs);
}

static void
loop_resync(struct loop *l, const struct req *r)
{
	struct resync *rs;
	const char *const *fields;
	char *cause = NULL;
	size_t n;

	if (r->table == NULL || r->sys_id == NULL) {
		log_kv(LOG_LVL_WARN, "resync request without table and sys_id ignored",
		    "ticket", r->ticket, NULL);
		return;
	}
	rs = xcalloc(1, sizeof(*rs));
	rs->l = l;
	rs->table = xstrdup(r->table);
	rs->number = xstrdup(r->ticket ? r->ticket : r->sys_id);
	fields = loop_patch_fields(l, r->table, &n);
	if (snow_get(l->snow, r->table, r->sys_id, fields, n, loop_resync_done, rs, &cause) < 0) {
		log_kv(LOG_LVL_WARN, "resync refused", "ticket", rs->number, "error", cause, NULL);
		free(cause);
		free(rs->table);
		free(rs->number);
		free(rs);
	}
}

struct unpark {
	uint64_t	  seq;		/* 0: every parked entry */
	uint64_t	 *seqs;
	char		**encs;
	char		**keys;		/* their tickets, for the outbox index */
	size_t		  n;
};

static int
loop_unpark_scan(uint64_t seq, const void *val, size_t len, void *arg)
{
	struct unpark *u = arg;
	struct effect e;

	if (u->seq != 0 && seq != u->seq)
		return 0;
	if (codec_effect_decode(val, len, &e, NULL) < 0)
		return 0;
	if (e.not_before == LOOP_PARKED || u->seq != 0) {
		e.not_before = 0;
		/* A PATCH that may have landed keeps its read-back. */
		e.attempts = e.kind == EFFECT_PATCH && e.attempts > 0 ? 1 : 0;
		u->seqs = xreallocarray(u->seqs, u->n + 1, sizeof(*u->seqs));
		u->encs = xreallocarray(u->encs, u->n + 1, sizeof(*u->encs));
		u->keys = xreallocarray(u->keys, u->n + 1, sizeof(*u->keys));
		u->seqs[u->n] = seq;
		u->keys[u->n] = loop_key(e.table, e.sys_id);
		u->encs[u->n++] = codec_effect_encode(&e);
	}
	effect_free(&e);
	return 0;
}

static int
loop_unpark_fn(struct store_txn *txn, void *arg)
{
	struct unpark *u = arg;

	for (size_t i = 0; i < u->n; i++) {
		free(u->encs[i]);
		free(u->keys[i]);
	}
	free(u->seqs);
	free(u->encs);
	free(u->keys);
	u->seqs = NULL;
	u->encs = NULL;
	u->keys = NULL;
	u->n = 0;
	store_outbox_each(txn, loop_unpark_scan, u);
	for (size_t i = 0; i < u->n; i++)
		store_outbox_put(txn, u->seqs[i], u->encs[i], strlen(u->encs[i]));
	return store_txn_error(txn);
}

static void
loop_retry(struct loop *l, const struct req *r)
{
	struct unpark u = { .seq = r->seq };
	char count[24];
	int rc;

	rc = store_write(l->st, loop_unpark_fn, &u);
	snprintf(count, sizeof(count), "%zu", u.n);
	if (rc < 0)
		log_kv(LOG_LVL_ERR, "retry failed", "error", store_strerror(rc), NULL);
	else
		log_kv(u.n || r->seq ? LOG_LVL_NOTICE : LOG_LVL_DEBUG, "parked writes released",
		    "count", count, NULL);
	for (size_t i = 0; i < u.n; i++) {
		if (rc == 0)
			outq_set_due(l->oq, u.keys[i], u.seqs[i], 0);
		free(u.encs[i]);
		free(u.keys[i]);
	}
	free(u.seqs);
	free(u.encs);
	free(u.keys);
	l->outbox_dirty = 1;
}

static void
loop_requests(struct loop *l)
{
	struct req *v = NULL;
	size_t n = 0;

	if (l->snow == NULL || requests_take(l->st, &v, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (v[i].op == REQ_RESYNC)
			loop_resync(l, &v[i]);
		else
			loop_retry(l, &v[i]);
	}
	requests_free(v, n);
}

/* --- life ---------------------------------------------------------------------- */

static void
loop_polls_free(struct loop *l)
{
	for (size_t i = 0; i < l->npolls; i++) {
		free(l->polls[i].table);
		for (size_t k = 0; k < l->polls[i].nfields; k++)
			free(l->polls[i].fields[k]);
		free(l->polls[i].fields);
		free(l->polls[i].last_error);
	}
	free(l->polls);
	l->polls = NULL;
	l->npolls = 0;
}

static void
loop_load_positions(struct loop *l)
{
	struct store_txn *txn;
	struct buf b;

	buf_init(&b);
	if (store_begin(l->st, 1, &txn) < 0)
		return;
	for (size_t i = 0; i < l->npolls; i++) {
		char *k = xprintf("watermark/%s", l->polls[i].table);
		long long t;
		char sid[33];

		memset(&l->polls[i].wm, 0, sizeof(l->polls[i].wm));
		buf_reset(&b);
		if (store_meta_get(txn, k, &b) == 0 && sscanf(b.data, "%lld %32s", &t, sid) >= 1) {
			l->polls[i].wm.updated_on = t;
			if (sscanf(b.data, "%*s %32s", sid) == 1)
				memcpy(l->polls[i].wm.sys_id, sid, sizeof(sid));
		}
		free(k);
	}
	buf_reset(&b);
	free(l->cursor);
	l->cursor = NULL;
	if (store_meta_get(txn, "imperai/cursor", &b) == 0 && b.len > 0)
		l->cursor = xstrdup(b.data);
	store_abort(txn);
	buf_free(&b);
}

static void
loop_polls_init(struct loop *l)
{
	l->npolls = l->cfg->snow.ntables;
	l->polls = xcalloc(l->npolls, sizeof(*l->polls));
	for (size_t i = 0; i < l->npolls; i++) {
		l->polls[i].table = xstrdup(l->cfg->snow.tables[i].name);
		loop_poll_fields(l, &l->polls[i]);
	}
}

static int
loop_clients(struct loop *l, char **cause)
{
	l->http = http_client_new();
	l->snow = snow_client_new(l->cfg, l->http, cause);
	if (l->snow == NULL)
		return -EINVAL;
	l->imp = imperai_client_new(l->cfg, l->http, cause);
	if (l->imp == NULL)
		return -EINVAL;
	loop_budget_load(l);
	return 0;
}

static void
loop_clients_free(struct loop *l)
{
	if (l->http)
		http_cancel_all(l->http);
	/* Cancellation callbacks may have queued state: keep it, and the
	 * budget's use, with no reserve: these pools send nothing more. */
	l->budget_final = 1;
	loop_commit(l, 0);
	l->budget_final = 0;
	/* The metrics' request counters outlive the pools a reload replaces. */
	if (l->snow)
		loop_metrics_service(&l->m_base[0], &l->m_base[0], snow_client_pool(l->snow));
	if (l->imp)
		loop_metrics_service(&l->m_base[1], &l->m_base[1], imperai_client_pool(l->imp));
	if (l->snow)
		snow_client_free(l->snow);
	if (l->imp)
		imperai_client_free(l->imp);
	if (l->http)
		http_client_free(l->http);
	l->snow = NULL;
	l->imp = NULL;
	l->http = NULL;
}

int
loop_new(struct config *cfg, struct flows *flows, struct loop **out, char **cause)
{
	struct loop *l = xcalloc(1, sizeof(*l));
	int rc;

	l->cfg = cfg;
	l->flows = flows;
	engine_policy_init(&l->pol, cfg, flows);
	rc = store_open(cfg->state_dir, cfg->map_size, 0, &l->st, cause);
	if (rc < 0)
		goto fail;
	if ((rc = loop_clients(l, cause)) < 0)
		goto fail;
	loop_polls_init(l);
	l->sweep = sweep_new(l->npolls, loop_now_ms(), cfg->snow.sweep_interval);
	loop_load_positions(l);
	l->m_base[0].name = "servicenow";
	l->m_base[1].name = "imperai";
	loop_outq_load(l);
	l->progress_ms = loop_now_ms();
	l->started = loop_wall();
	srand((unsigned)(l->started ^ getpid()));
	*out = l;
	return 0;
fail:
	loop_free(l);
	return rc;
}

void
loop_reload(struct loop *l, struct config *cfg, struct flows *flows)
{
	struct tpoll *saved = xcalloc(l->npolls ? l->npolls : 1, sizeof(*saved));
	char **names = xcalloc(l->npolls ? l->npolls : 1, sizeof(*names));
	size_t nsaved = l->npolls;
	char *cause = NULL;

	for (size_t i = 0; i < nsaved; i++) {
		saved[i] = l->polls[i];
		names[i] = xstrdup(l->polls[i].table);
	}
	loop_clients_free(l);
	loop_polls_free(l);
	config_free(l->cfg);
	flows_free(l->flows);
	l->cfg = cfg;
	l->flows = flows;
	engine_policy_init(&l->pol, cfg, flows);
	if (loop_clients(l, &cause) < 0) {
		log_kv(LOG_LVL_ERR, "reload: cannot set up the clients", "error", cause, NULL);
		free(cause);
	}
	loop_polls_init(l);
	sweep_free(l->sweep);
	l->sweep = sweep_new(l->npolls, loop_now_ms(), cfg->snow.sweep_interval);
	for (size_t i = 0; i < l->npolls; i++)
		for (size_t k = 0; k < nsaved; k++)
			if (strcmp(l->polls[i].table, names[k]) == 0) {
				l->polls[i].wm = saved[k].wm;
				l->polls[i].seen = saved[k].seen;
				l->polls[i].last_ok = saved[k].last_ok;
			}
	loop_load_positions(l);
	for (size_t k = 0; k < nsaved; k++)
		free(names[k]);
	free(names);
	free(saved);
	l->outbox_dirty = 1;
	l->feed_next_ms = 0;
}

static void
loop_schedule(struct loop *l, int64_t now)
{
	if (l->snow == NULL || l->imp == NULL)
		return;
	for (size_t i = 0; i < l->npolls; i++)
		if (!l->polls[i].inflight && now >= l->polls[i].next_ms)
			loop_poll_start(l, &l->polls[i]);
	if (!l->feed_inflight && now >= l->feed_next_ms) {
		l->feed_started_ms = now;
		loop_feed_submit(l);
	}
	for (size_t i = 0; i < l->npolls; i++)
		sweep_schedule(l->sweep, i, l->polls[i].table, (const char *const *)l->polls[i].fields,
		    l->polls[i].nfields, l->polls[i].wm.updated_on, &(struct sweep_env){ l->cfg,
		    l->flows, l->snow, loop_sweep_observe, l }, now);
}

static void
loop_write_status(struct loop *l)
{
	json_object *o = json_object_new_object(), *tabs = json_object_new_object();
	struct http_pool_stats ss, is;
	struct store_txn *txn;
	const char *s;
	char buf[32];

	json_object_object_add(o, "pid", json_object_new_int64(getpid()));
	json_object_object_add(o, "started", json_object_new_int64(l->started));
	json_object_object_add(o, "updated", json_object_new_int64(loop_wall()));
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
	json_object_object_add(o, "feed_last_ok", json_object_new_int64(l->feed_last_ok));
	if (l->feed_last_error)
		json_object_object_add(o, "feed_last_error", json_object_new_string(l->feed_last_error));
	if (l->snow && l->imp) {
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

static int64_t
loop_min(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* Idle: how long nothing is due (a poll, the feed, an outbox entry, the
 * operator requests, the status), up to until: the loop sleeps through it
 * rather than waking every few milliseconds. */
static int64_t
loop_idle_ms(const struct loop *l, int64_t now, int64_t until)
{
	int64_t next = loop_min(until, l->requests_ms);
	int64_t due = outq_next_due(l->oq);

	for (size_t i = 0; i < l->npolls; i++)
		if (!l->polls[i].inflight)
			next = loop_min(next, l->polls[i].next_ms);
	if (!l->feed_inflight)
		next = loop_min(next, l->feed_next_ms);
	next = loop_min(next, sweep_next_ms(l->sweep));
	if (l->cfg->snow.parked_retry > 0 && l->unpark_ms != 0)
		next = loop_min(next, l->unpark_ms);
	next = loop_min(next, l->status_ms + LOOP_STATUS_EVERY_MS);
	if (l->cfg->metrics_file && *l->cfg->metrics_file)
		next = loop_min(next, l->metrics_ms);
	if (l->outq_reload_ms != 0)
		next = loop_min(next, l->outq_reload_ms);
	if (due != INT64_MAX && l->outq_reload_ms == 0)
		next = loop_min(next, now + (due - loop_wall()) * 1000);
	return next - now;
}

int
loop_step(struct loop *l, int max_wait_ms)
{
	int64_t now = loop_now_ms(), until = now + max_wait_ms;

	loop_schedule(l, now);
	if (now >= l->requests_ms) {
		loop_requests(l);
		l->requests_ms = now + 1000;
	}
	/* a misconfiguration fixed by an admin heals without imperai-snowctl retry */
	if (l->cfg->snow.parked_retry > 0 && now >= l->unpark_ms) {
		if (l->unpark_ms != 0 && l->snow != NULL)
			loop_retry(l, &(struct req){ .seq = 0 });
		l->unpark_ms = now + (int64_t)l->cfg->snow.parked_retry * 1000;
	}
	/* what became due (retries, operator requests) starts now */
	loop_commit(l, 1);
	while (l->http && http_pending(l->http) > 0 && loop_now_ms() < until) {
		http_perform(l->http, (int)(until - loop_now_ms()));
		if (loop_has_pending(l) || l->outbox_dirty)
			break;
	}
	if (l->http && http_pending(l->http) == 0) {
		int64_t left = loop_idle_ms(l, loop_now_ms(), until);
		if (left > 0)
			http_perform(l->http, (int)left);
	}
	/* A store that cannot be written (disk full) is retried by the next
	 * polls; the loop itself still turns, so the watchdog is fed: a
	 * restart would not free space. */
	loop_commit(l, 1);
	if (loop_now_ms() - l->status_ms > LOOP_STATUS_EVERY_MS) {
		loop_write_status(l);
		l->status_ms = loop_now_ms();
	}
	if (l->cfg->metrics_file && *l->cfg->metrics_file && loop_now_ms() >= l->metrics_ms) {
		loop_metrics_write(l);
		l->metrics_ms = loop_now_ms() + (int64_t)l->cfg->metrics_interval * 1000;
	}
	l->progress_ms = loop_now_ms();
	return 0;
}

int64_t
loop_last_progress(const struct loop *l)
{
	return l->progress_ms;
}

void
loop_status(const struct loop *l, char *buf, size_t len)
{
	if (l->store_failing)
		snprintf(buf, len, "state store in %s cannot be written (disk full?): nothing is "
		    "sent until it can", l->cfg->state_dir);
	else
		snprintf(buf, len, "polling %zu table%s; %d ServiceNow and %d imper.ai writes in "
		    "flight", l->npolls, l->npolls == 1 ? "" : "s", l->snow_jobs, l->imp_jobs);
}

void
loop_free(struct loop *l)
{
	if (l == NULL)
		return;
	loop_clients_free(l);
	sweep_free(l->sweep);
	loop_pending_clear(l);
	loop_polls_free(l);
	outq_free(l->oq);
	free(l->tbl);
	free(l->cursor);
	free(l->feed_last_error);
	if (l->st)
		store_close(l->st);
	config_free(l->cfg);
	flows_free(l->flows);
	free(l);
}
